"""Base fixtures shared by all tests. Per-area fixtures live in their own conftest.py files.

Timeouts (120 s per test) and asyncio mode (auto) are configured in pyproject.toml.
Server fixtures are session-scoped and opt-in: a test that uses one carries the matching marker
(@pytest.mark.nats / redis / s3 / cql). A missing binary skips locally and fails in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.servers.binaries import in_ci, require_binary
from tests.servers.cassandra import CassandraServer, CassandraUnavailable
from tests.servers.nats import NatsServer
from tests.servers.redis import RedisServer

if TYPE_CHECKING:
    from tests.servers.seaweedfs import SeaweedServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server -js for the session; tests may restart() it (same port and store)."""
    server = NatsServer(require_binary("nats-server", "nats"), tmp_path_factory.mktemp("nats"))
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests may restart() it (same port, data is lost)."""
    server = RedisServer(require_binary("redis-server", "redis"), tmp_path_factory.mktemp("redis"))
    with server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS with a signed-only S3 gateway for the session (same port on restart())."""
    # Imported here: it loads boto3, which tests without S3 do not need.
    from tests.servers.seaweedfs import SeaweedServer

    server = SeaweedServer(require_binary("weed", "s3"), tmp_path_factory.mktemp("seaweedfs"))
    with server:
        yield server


@pytest.fixture(scope="session")
def cassandra_server() -> Iterator[CassandraServer]:
    """One Cassandra node (standing in for ScyllaDB) for the session: skips locally, fails in CI
    when java/mvn or the jars are missing; a server that fails to start always fails."""
    server = CassandraServer()
    try:
        server.start()
    except CassandraUnavailable as e:
        if in_ci():
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()
