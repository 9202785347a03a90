"""A server for tests: chatmesh_launcher/cluster/nats.py, which `chatmesh cluster up` runs."""

from chatmesh_launcher.cluster.nats import NatsServer

__all__ = ["NatsServer"]
