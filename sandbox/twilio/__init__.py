"""The twilio simulator."""
