"""A server for tests: chatmesh_launcher/cluster/redis.py, which `chatmesh cluster up` runs."""

from chatmesh_launcher.cluster.redis import RedisServer

__all__ = ["RedisServer"]
