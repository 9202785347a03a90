"""Fixtures of the CQL end-to-end tests: a fresh keyspace per test and replica processes on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.servers.cassandra import CassandraServer

from .support import Replica, fresh_keyspace, run_migrate, scylla_env

StartReplica = Callable[[], Awaitable[Replica]]


@pytest.fixture
def keyspace_env(cassandra_server: CassandraServer, tmp_path: Path) -> dict[str, str]:
    """Environment for `chatmesh migrate` and replicas on a keyspace no other test uses."""
    return scylla_env(cassandra_server, fresh_keyspace(), tmp_path / "data")


@pytest.fixture
async def start_replica(
    keyspace_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[StartReplica]:
    """`await start_replica()`: one more serving `python -m chat_service` on the test's keyspace
    (which must be migrated first); all are stopped at the end of the test."""
    started: list[Replica] = []

    async def start() -> Replica:
        replica = Replica(keyspace_env, tmp_path / f"replica-{len(started)}.log")
        started.append(replica)
        await replica.start()
        return replica

    try:
        yield start
    finally:
        for replica in started:
            await replica.close()


@pytest.fixture
async def migrated_env(keyspace_env: dict[str, str]) -> dict[str, str]:
    """`keyspace_env` after one `chatmesh migrate`."""
    result = await run_migrate(keyspace_env)
    assert result.returncode == 0, result.output
    return keyspace_env
