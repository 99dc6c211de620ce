"""Recovery: cases, the policies that decide what to do about them, and what operators do to them."""
