"""Client side: the HTTP API, the per-account dispatcher and the admin CLI."""
