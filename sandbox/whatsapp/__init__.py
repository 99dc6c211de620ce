"""The whatsapp simulator."""
