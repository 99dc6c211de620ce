"""Accounts: the people who sign in, and the gateway and channel accounts whose secrets Recoup keeps."""
