"""Temporal workflows: one AccountWorkflow per account."""
