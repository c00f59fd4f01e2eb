"""Adapters behind the ports: Postgres event store, secrets, settings, logging, wiring."""
