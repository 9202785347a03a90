"""Free TCP ports on the loopback interface (the cluster launcher's, shared with the tests)."""

from chatmesh_launcher.cluster.ports import free_port

__all__ = ["free_port"]
