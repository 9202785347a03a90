"""Helpers for the CQL end-to-end tests: `chatmesh migrate` and `python -m chat_service` as real
processes against a keyspace of the session's CQL server (Cassandra standing in for ScyllaDB)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chat.support import SECRET, SERVICE_SECRET
from tests.servers.cassandra import CassandraServer
from tests.servers.services import ChatServiceProcess

REPO = Path(__file__).resolve().parents[2]


def fresh_keyspace(prefix: str = "cqlt") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def scylla_env(server: CassandraServer, keyspace: str, data_dir: Path) -> dict[str, str]:
    """The environment of a replica (or `chatmesh migrate`) on `keyspace`."""
    return {
        **os.environ,
        "CHATMESH_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": server.host,
        "CHATMESH_SCYLLA_PORT": str(server.port),
        "CHATMESH_SCYLLA_DC": server.datacenter,
        "CHATMESH_SCYLLA_KEYSPACE": keyspace,
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
        "CHATMESH_SCYLLA_MIGRATE_ON_OPEN": "0",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
        "CHATMESH_DATA_DIR": str(data_dir),
        "CHATMESH_METRICS_PORT": "-1",
        "CHATMESH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


@dataclass(frozen=True)
class MigrateResult:
    returncode: int
    output: str


async def run_migrate(env: dict[str, str], wait_s: float = 60.0) -> MigrateResult:
    """`chatmesh migrate` (as `python -m chatmesh_launcher migrate`) with this environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh_launcher",
        "migrate",
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(wait_s):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return MigrateResult(process.returncode, out.decode(errors="replace"))


class Replica(ChatServiceProcess):
    """`python -m chat_service` on the Scylla store; `.channel` is a ChannelSource for Client."""


@contextlib.contextmanager
def cql_session(server: CassandraServer) -> Iterator[Any]:
    """A plain driver session on the server (blocking; for checks from the test)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=server.datacenter)
    )
    cluster = Cluster(
        [server.host],
        port=server.port,
        protocol_version=4,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()
