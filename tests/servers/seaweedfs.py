"""A server for tests: chatmesh_launcher/cluster/seaweedfs.py, which `chatmesh cluster up` runs."""

from chatmesh_launcher.cluster.seaweedfs import SeaweedServer

__all__ = ["SeaweedServer"]
