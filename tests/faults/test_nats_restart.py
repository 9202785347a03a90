"""nats-server restarted while devices send: live fanout breaks for a moment, the streams read
what they missed from the store, and every device sees every event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.servers.nats import NatsServer

from .check import Figures
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def test_nats_restart_loses_no_event(
    nats_cluster: Cluster,
    nats_server: NatsServer,
    profile: Profile,
    record_figures: Callable[[Figures], None],
) -> None:
    """NATS stopped mid-load, down for the outage, started again on the same port and store."""

    async def fault() -> None:
        await asyncio.to_thread(nats_server.stop)
        try:
            await asyncio.sleep(profile.outage_s)
        finally:
            await asyncio.to_thread(nats_server.start)

    await run_fault(nats_cluster, profile, "nats-restart", fault, record_figures)
