"""The embedded dev/test stack: fake Stripe, mail catcher and the process runner."""
