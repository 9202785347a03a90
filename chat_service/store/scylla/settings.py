"""Settings of the ScyllaDB store, read from the environment (CHATMESH_STORE=scylla)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..base import ChatStore
from .store import ScyllaChatStore


class ScyllaSettingsError(ValueError):
    pass


def _replication(raw: str, local_dc: str) -> dict[str, Any]:
    """`SimpleStrategy:1`, or `NetworkTopologyStrategy:dc1=3,dc2=3` (default: local DC, 3)."""
    if not raw:
        return {"class": "NetworkTopologyStrategy", local_dc: 3}
    strategy, _, spec = raw.partition(":")
    if strategy == "SimpleStrategy":
        if not spec.isdigit():
            raise ScyllaSettingsError("CHATMESH_SCYLLA_REPLICATION: SimpleStrategy:<factor>")
        return {"class": strategy, "replication_factor": int(spec)}
    if strategy == "NetworkTopologyStrategy":
        out: dict[str, Any] = {"class": strategy}
        for part in spec.split(","):
            dc, _, factor = part.partition("=")
            if not dc or not factor.isdigit():
                raise ScyllaSettingsError(
                    "CHATMESH_SCYLLA_REPLICATION: NetworkTopologyStrategy:<dc>=<n>[,<dc>=<n>...]"
                )
            out[dc.strip()] = int(factor)
        return out
    raise ScyllaSettingsError(f"CHATMESH_SCYLLA_REPLICATION: unknown strategy {strategy!r}")


@dataclass(frozen=True)
class ScyllaSettings:
    contact_points: tuple[str, ...]
    port: int = 9042
    local_dc: str = "datacenter1"
    keyspace: str = "chatmesh"
    replication: dict[str, Any] = field(default_factory=dict)
    consistency: str = "LOCAL_QUORUM"
    username: str = ""
    password: str = ""
    request_timeout_s: float = 10.0
    # Replicas normally leave schema changes to `chatmesh migrate`; on is handy for one node.
    migrate_on_open: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ScyllaSettings:
        points = tuple(p.strip() for p in env.get("CHATMESH_SCYLLA_CONTACT_POINTS", "").split(","))
        points = tuple(p for p in points if p)
        if not points:
            raise ScyllaSettingsError(
                "CHATMESH_SCYLLA_CONTACT_POINTS is required with CHATMESH_STORE=scylla"
            )
        local_dc = env.get("CHATMESH_SCYLLA_DC", "datacenter1")
        try:
            port = int(env.get("CHATMESH_SCYLLA_PORT", "9042"))
            timeout = float(env.get("CHATMESH_SCYLLA_TIMEOUT_S", "10"))
        except ValueError as exc:
            raise ScyllaSettingsError(f"CHATMESH_SCYLLA_PORT / _TIMEOUT_S: {exc}") from exc
        consistency = env.get("CHATMESH_SCYLLA_CONSISTENCY", "LOCAL_QUORUM").upper()
        if consistency not in ("LOCAL_QUORUM", "QUORUM", "EACH_QUORUM", "ALL", "LOCAL_ONE", "ONE"):
            raise ScyllaSettingsError(f"CHATMESH_SCYLLA_CONSISTENCY: unknown {consistency!r}")
        username = env.get("CHATMESH_SCYLLA_USER", "")
        password = env.get("CHATMESH_SCYLLA_PASSWORD", "")
        if username and not password:
            raise ScyllaSettingsError("CHATMESH_SCYLLA_USER needs CHATMESH_SCYLLA_PASSWORD")
        return cls(
            contact_points=points,
            port=port,
            local_dc=local_dc,
            keyspace=env.get("CHATMESH_SCYLLA_KEYSPACE", "chatmesh"),
            replication=_replication(env.get("CHATMESH_SCYLLA_REPLICATION", ""), local_dc),
            consistency=consistency,
            username=username,
            password=password,
            request_timeout_s=timeout,
            migrate_on_open=env.get("CHATMESH_SCYLLA_MIGRATE_ON_OPEN", "") in ("1", "true"),
        )

    def build_store(self, migrate_on_open: bool | None = None) -> ChatStore:
        options: dict[str, Any] = {}
        if self.username:
            from cassandra.auth import PlainTextAuthProvider

            options["auth_provider"] = PlainTextAuthProvider(self.username, self.password)
        return ScyllaChatStore(
            list(self.contact_points),
            port=self.port,
            local_dc=self.local_dc,
            keyspace=self.keyspace,
            replication=self.replication,
            consistency=self.consistency,
            request_timeout=self.request_timeout_s,
            migrate_on_open=self.migrate_on_open if migrate_on_open is None else migrate_on_open,
            cluster_options=options,
        )
