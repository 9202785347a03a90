"""The CQL server frozen with SIGSTOP while devices send, then SIGCONT: writes stall or fail
retryably, and once it runs again every acknowledged message is there."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from tests.servers.cassandra import CassandraServer

from .check import Figures
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.cql,
    pytest.mark.nats,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def test_cql_server_paused_loses_no_acknowledged_message(
    cql_cluster: Cluster,
    cassandra_server: CassandraServer,
    profile: Profile,
    record_figures: Callable[[Figures], None],
) -> None:
    """Cassandra stopped (SIGSTOP) for the outage mid-load, then continued (SIGCONT)."""
    pid = cassandra_server.pid
    assert pid is not None

    async def fault() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(profile.outage_s)
        finally:
            os.kill(pid, signal.SIGCONT)

    try:
        await run_fault(cql_cluster, profile, "cql-sigstop", fault, record_figures)
    finally:
        os.kill(pid, signal.SIGCONT)  # never leave the session's server frozen
