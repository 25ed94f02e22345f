"""Overtime's shared infrastructure: settings, persistence, catalog, mail and webhooks."""
