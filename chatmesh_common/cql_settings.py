"""Settings of a CQL cluster (ScyllaDB; Cassandra works too), read from the environment: the
CHATMESH_SCYLLA_* variables every service with a cluster store shares (chat_service's timelines,
media_service's records, in one keyspace or several)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from chatmesh_common.settings import ConfigError, read_env, setting, validate

CONSISTENCIES = ("LOCAL_QUORUM", "QUORUM", "EACH_QUORUM", "ALL", "LOCAL_ONE", "ONE")


class ScyllaSettingsError(ConfigError):
    """A CHATMESH_SCYLLA_* setting is missing or malformed."""


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
    """The CHATMESH_SCYLLA_* settings, declared like every other (`chatmesh config`)."""

    contact_points: tuple[str, ...] = setting(
        "CHATMESH_SCYLLA_CONTACT_POINTS",
        (),
        "the ScyllaDB nodes, comma-separated (required with CHATMESH_STORE=scylla)",
        required=True,
    )
    port: int = setting("CHATMESH_SCYLLA_PORT", 9042, "CQL port", minimum=1, maximum=65535)
    local_dc: str = setting("CHATMESH_SCYLLA_DC", "datacenter1", "the local datacenter")
    keyspace: str = setting("CHATMESH_SCYLLA_KEYSPACE", "chatmesh", "the keyspace")
    # Parsed by `replication`; kept as written so the listing shows what was set.
    replication_spec: str = setting(
        "CHATMESH_SCYLLA_REPLICATION",
        "",
        "SimpleStrategy:<n> or NetworkTopologyStrategy:<dc>=<n>,... (empty: local DC, 3)",
    )
    consistency: str = setting(
        "CHATMESH_SCYLLA_CONSISTENCY",
        "LOCAL_QUORUM",
        "consistency of reads and writes",
        choices=CONSISTENCIES,
    )
    username: str = setting("CHATMESH_SCYLLA_USER", "", "CQL user (with CHATMESH_SCYLLA_PASSWORD)")
    password: str = setting("CHATMESH_SCYLLA_PASSWORD", "", "the CQL user's password", secret=True)
    request_timeout_s: float = setting(
        "CHATMESH_SCYLLA_TIMEOUT_S", 10.0, "deadline of one CQL request", positive=True
    )
    # Replicas normally leave schema changes to `chatmesh migrate`; on is handy for one node.
    migrate_on_open: bool = setting(
        "CHATMESH_SCYLLA_MIGRATE_ON_OPEN",
        False,
        "apply schema migrations when the store opens (one node; else `chatmesh migrate`)",
    )

    def __post_init__(self) -> None:
        try:
            validate(self)
        except ConfigError as exc:
            raise ScyllaSettingsError(str(exc)) from exc
        if self.username and not self.password:
            raise ScyllaSettingsError("CHATMESH_SCYLLA_USER needs CHATMESH_SCYLLA_PASSWORD")
        _replication(self.replication_spec, self.local_dc)  # malformed: refuse at start-up

    @property
    def replication(self) -> dict[str, Any]:
        return _replication(self.replication_spec, self.local_dc)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        source = dict(env)
        # Consistency names are case-insensitive on the command line, upper case in CQL.
        source["CHATMESH_SCYLLA_CONSISTENCY"] = source.get(
            "CHATMESH_SCYLLA_CONSISTENCY", ""
        ).upper()
        try:
            return read_env(cls, source)
        except ScyllaSettingsError:
            raise
        except ConfigError as exc:
            raise ScyllaSettingsError(str(exc)) from exc

    def cluster_options(self) -> dict[str, Any]:
        """Keyword arguments of the driver's Cluster beyond the contact points (auth)."""
        if not self.username:
            return {}
        from cassandra.auth import PlainTextAuthProvider

        return {"auth_provider": PlainTextAuthProvider(self.username, self.password)}
