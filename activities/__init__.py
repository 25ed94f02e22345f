"""Temporal activities: every side effect of the account workflow, each idempotent."""
