"""Shared pieces of the chatmesh services: auth, gRPC server plumbing, the event bus, the CLI."""
