"""A keyspace whose replication the CQL cluster can meet, checked before any schema is made.

A keyspace asking three replicas of a one-node cluster is accepted by CREATE KEYSPACE, and then
every statement at LOCAL_QUORUM (the migrations' claims among them) fails: the half-made keyspace
stays behind. `ensure_keyspace` refuses such a replication with one line naming the setting that
fits, before creating anything; and a keyspace an earlier run left that way is moved to the
configured replication when that one fits (the keyspace could never have held a write at
quorum, so nothing is lost), so a rerun after fixing the setting succeeds. A keyspace that
exists with a replication the cluster meets is left as it is: changing a live keyspace's
replication is an operator's step (ALTER KEYSPACE, then a repair).

Shared by every store that migrates a keyspace (chat_service's and media_service's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chatmesh_common.settings import ConfigError

log = logging.getLogger(__name__)

SETTING = "CHATMESH_SCYLLA_REPLICATION"


class ReplicationError(ConfigError):
    """The keyspace's replication asks for more replicas than the cluster has."""


def replication_clause(replication: Mapping[str, Any]) -> str:
    """A CQL replication map, e.g. {'class': 'NetworkTopologyStrategy', 'dc1': 3}."""
    parts = []
    for key, value in replication.items():
        rendered = str(value) if isinstance(value, int) else f"'{value}'"
        parts.append(f"'{key}': {rendered}")
    return "{" + ", ".join(parts) + "}"


def replicas_missing(replication: Mapping[str, Any], nodes_per_dc: Mapping[str, int]) -> str | None:
    """Why `replication` cannot be met by a cluster with these nodes per datacenter, or None."""
    total = sum(nodes_per_dc.values())
    if replication.get("class") == "SimpleStrategy":
        factor = int(replication.get("replication_factor", 1))
        if factor > total:
            return f"SimpleStrategy:{factor} needs {factor} nodes, the cluster has {total}"
        return None
    for dc, factor in replication.items():
        if dc == "class":
            continue
        have = nodes_per_dc.get(dc, 0)
        if int(factor) > have:
            known = ", ".join(f"{d}={n}" for d, n in sorted(nodes_per_dc.items())) or "none"
            return (
                f"{factor} replicas in datacenter {dc!r} but the cluster has {have} node(s)"
                f" there (nodes per datacenter: {known})"
            )
    return None


def nodes_per_dc(session: Any) -> dict[str, int]:
    """The cluster's nodes by datacenter, down ones included (the driver's metadata)."""
    counts: dict[str, int] = {}
    for host in session.cluster.metadata.all_hosts():
        dc = host.datacenter or "unknown"
        counts[dc] = counts.get(dc, 0) + 1
    return counts


def fitting(nodes: Mapping[str, int]) -> str:
    """The setting that fits this cluster: up to three replicas in each datacenter."""
    spec = ",".join(f"{dc}={min(n, 3)}" for dc, n in sorted(nodes.items()))
    return f"{SETTING}=NetworkTopologyStrategy:{spec}"


def _existing(session: Any, keyspace: str) -> dict[str, Any] | None:
    """The replication an existing keyspace was made with, in the settings' form; None: none."""
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in dict(row.replication).items():
        if key == "class":
            # The server names the class in full (org.apache.cassandra.locator.SimpleStrategy).
            out[key] = str(value).rpartition(".")[2]
        elif str(value).isdigit():
            out[key] = int(value)
    return out


def ensure_keyspace(session: Any, keyspace: str, replication: Mapping[str, Any]) -> None:
    """Creates `keyspace` with `replication`, or makes an existing one usable (module doc).

    Blocking; `keyspace` must already be a valid name.
    """
    nodes = nodes_per_dc(session)
    wanted = replicas_missing(replication, nodes)
    existing = _existing(session, keyspace)
    if existing is None:
        if wanted is not None:
            raise ReplicationError(
                f"{SETTING}: {wanted}; nothing was created. Set {fitting(nodes)} to fit this"
                " cluster"
            )
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication ="
            f" {replication_clause(replication)}"
        )
        return
    have = replicas_missing(existing, nodes)
    if have is None:
        return
    if wanted is not None:
        raise ReplicationError(
            f"keyspace {keyspace} exists with {have}, and {SETTING} asks as many; set"
            f" {fitting(nodes)} and run again (the keyspace is moved to it)"
        )
    log.warning("keyspace %s: %s; moving it to %s", keyspace, have, replication_clause(replication))
    session.execute(
        f"ALTER KEYSPACE {keyspace} WITH replication = {replication_clause(replication)}"
    )
