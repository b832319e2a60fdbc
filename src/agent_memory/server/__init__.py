"""Serving agent-memory: wiring, transports, auth and the CLI commands."""
