"""Messages: templates (sandboxed, bounded), the built-in texts and the merchant's branding around them."""
