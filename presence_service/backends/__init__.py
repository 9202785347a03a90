"""Presence storage: `base.PresenceBackend` and its in-memory and Redis implementations."""
