"""Tests of the NATS bus, the relay to JetStream, and chatmesh across several processes."""
