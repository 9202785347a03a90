"""Base fixtures shared by all tests. Per-area fixtures live in their own conftest.py files.

Timeouts (120 s per test) and asyncio mode (auto) are configured in pyproject.toml.
Server fixtures are session-scoped and opt-in: a test that uses one carries the matching marker
(@pytest.mark.nats / redis / s3 / cql). A missing binary skips locally and fails in CI.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers.binaries import require_binary, server_unavailable
from tests.servers.cassandra import CassandraServer, CassandraUnavailable
from tests.servers.nats import NatsServer
from tests.servers.redis import RedisServer
from tests.servers.solr import SolrServer, SolrUnavailable

if TYPE_CHECKING:
    from tests.servers.seaweedfs import SeaweedServer


def pytest_configure() -> None:
    """Keeps grpc.aio's engine up for the whole run.

    grpc.aio shuts its engine down, joining its poller thread, whenever the last aio object of
    the process is freed. In a test run that happens between tests, on whatever thread the
    garbage collector happens to run in. Once that was the CQL driver's reactor thread: the join
    never returned, every later CQL request waited on the stuck reactor, and each CQL test
    failed on its timeout (a CI run spent its whole time limit this way). A service process never
    gets there, since its server holds the engine while it runs; one reference held here does
    the same for the test run."""
    importlib.import_module("grpc._cython.cygrpc").init_grpc_aio()


# Past its own timeout a test gets this long to finish its teardown (pytest-timeout arms once:
# a teardown stuck after it fired would otherwise hang the whole run, silently).
WATCHDOG_GRACE_S = 180
# Where the stacks of a hung run go (pytest captures fd 2 during a test, and an exiting process
# loses what was captured); .ci/run prints it when the run fails.
HANG_REPORT = Path(__file__).resolve().parents[1] / ".pytest-hang.log"


class _Watchdog:
    """A thread of its own, not faulthandler's timer: pytest cancels that one whenever a test
    fails, which is exactly when a stuck teardown follows."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._nodeid = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="test-watchdog", daemon=True).start()

    def arm(self, nodeid: str, limit_s: float) -> None:
        with self._lock:
            self._nodeid, self._deadline = nodeid, time.monotonic() + limit_s

    def disarm(self) -> None:
        with self._lock:
            self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(1)
            with self._lock:
                overdue = self._deadline is not None and time.monotonic() > self._deadline
                nodeid = self._nodeid
            if overdue:
                with HANG_REPORT.open("w") as report:
                    report.write(f"{nodeid} is stuck past its timeout; its threads:\n")
                    report.flush()
                    faulthandler.dump_traceback(file=report, all_threads=True)
                os._exit(3)


_watchdog: _Watchdog | None = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Every thread's stack, then exit, for a test still running well past its timeout."""
    global _watchdog
    marker = item.get_closest_marker("timeout")
    timeout_s = float(marker.args[0]) if marker and marker.args else 0.0
    timeout_s = timeout_s or float(item.config.getini("timeout") or 0)
    if timeout_s > 0:
        _watchdog = _watchdog or _Watchdog()
        _watchdog.arm(item.nodeid, timeout_s + WATCHDOG_GRACE_S)
    try:
        yield
    finally:
        if _watchdog is not None:
            _watchdog.disarm()


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
        server_unavailable(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def solr_server() -> Iterator[SolrServer]:
    """One SolrCloud node (embedded ZooKeeper) for the session: skips locally, fails in CI when
    java/javac/mvn or the jars are missing; a server that fails to start always fails."""
    server = SolrServer()
    try:
        server.start()
    except SolrUnavailable as e:
        server_unavailable(str(e))
    try:
        yield server
    finally:
        server.stop()
