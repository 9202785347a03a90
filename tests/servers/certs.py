"""A throwaway CA and certificates for TLS tests, written as PEM files to a directory (built
with the cluster launcher's certificate helpers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatmesh_launcher.cluster.certs import Leaf, new_ca, new_leaf

__all__ = ["Certs", "Leaf", "make_certs"]


@dataclass(frozen=True)
class Certs:
    ca: Path
    # What the services serve and, under mutual TLS, present as clients.
    service: Leaf
    # A certificate from another CA: a stranger under mutual TLS.
    stranger: Leaf

    def env(self, client_auth: bool = False) -> dict[str, str]:
        """The CHATMESH_TLS_* settings of a service with the shared certificate."""
        return {
            "CHATMESH_TLS_CERT_FILE": str(self.service.cert),
            "CHATMESH_TLS_KEY_FILE": str(self.service.key),
            "CHATMESH_TLS_CA_FILE": str(self.ca),
            "CHATMESH_TLS_CLIENT_AUTH": "true" if client_auth else "false",
        }


def make_certs(directory: Path) -> Certs:
    """A CA, a service certificate it signs, and a stranger's from a second CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_path = new_ca(directory, "chatmesh-test-ca")
    other, other_key, _ = new_ca(directory, "other-ca")
    return Certs(
        ca=ca_path,
        service=new_leaf(directory, "service", ca, ca_key),
        stranger=new_leaf(directory, "stranger", other, other_key),
    )
