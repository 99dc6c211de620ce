"""The smtp simulator."""
