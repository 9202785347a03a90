"""Store fixtures: one `store` per backend, each on fresh storage, reopenable for durability tests.

The backends are the params of `store_backend`. The embedded SQLite store runs everywhere; a
cluster store backed by a real CQL server is added as `pytest.param("cql", marks=pytest.mark.cql)`
with a `CqlBackend` (one keyspace per test) next to `SqliteBackend`, and the suite runs unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_service.store.base import ChatStore
from chat_service.store.sqlite import SqliteChatStore
from tests.servers.cassandra import CassandraServer

from .contract import StoreBackend


class SqliteBackend:
    """SqliteChatStore instances on one database file."""

    metrics_label = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: list[ChatStore] = []

    async def open(self) -> ChatStore:
        store = SqliteChatStore(self.path)
        await store.open()
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


class CqlBackend:
    """ScyllaChatStore instances on one keyspace of the session's CQL server.

    The keyspace is shared by the session's tests (the contract uses fresh ids in every test),
    so the schema is created once; each store instance has its own driver connection pool.
    """

    metrics_label = "scylla"

    def __init__(self, server: CassandraServer, keyspace: str) -> None:
        self.server = server
        self.keyspace = keyspace
        self._open: list[ChatStore] = []

    async def open(self) -> ChatStore:
        from chat_service.store.scylla import ScyllaChatStore

        store = ScyllaChatStore(
            [self.server.host],
            port=self.server.port,
            local_dc=self.server.datacenter,
            keyspace=self.keyspace,
            replication={"class": "SimpleStrategy", "replication_factor": 1},
        )
        await store.open()
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().close()


@pytest.fixture(scope="session")
def cql_keyspace() -> str:
    return f"chat_test_{uuid.uuid4().hex[:12]}"


STORE_BACKENDS = [
    "sqlite",
    pytest.param("cql", marks=pytest.mark.cql),
]


@pytest.fixture(params=STORE_BACKENDS)
async def store_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreBackend]:
    """Fresh storage for one test, on the backend named by the param."""
    backend: StoreBackend
    if request.param == "sqlite":
        backend = SqliteBackend(tmp_path / "chat.sqlite3")
    elif request.param == "cql":
        backend = CqlBackend(
            request.getfixturevalue("cassandra_server"),
            request.getfixturevalue("cql_keyspace"),
        )
    else:
        raise pytest.UsageError(f"no store backend {request.param!r}")
    try:
        yield backend
    finally:
        await backend.close_all()


@pytest.fixture
async def store(store_backend: StoreBackend) -> ChatStore:
    """An opened store on fresh storage."""
    return await store_backend.open()
