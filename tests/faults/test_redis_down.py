"""Redis (presence) down while devices send: chat goes on untouched, no socket closes, and once
Redis is back (empty) the next heartbeats show the users online again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.bus_nats.cluster import token
from tests.gateway.client import GatewayClient
from tests.servers.redis import RedisServer

from .check import Figures
from .presence_probe import WATCHER, until_online
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.redis,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def test_redis_down_leaves_chat_and_sockets_alone(
    presence_cluster: Cluster,
    redis_server: RedisServer,
    profile: Profile,
    record_figures: Callable[[Figures], None],
) -> None:
    """Redis stopped mid-load and started again empty: nothing lost, presence comes back."""
    extra: dict[str, float] = {}
    url = presence_cluster.gateways[1].url

    async def fault() -> None:
        watcher = await GatewayClient.connect(url, token(WATCHER, "watch"), timeout_s=15)
        try:
            await until_online(watcher)
            await asyncio.to_thread(redis_server.stop)
            try:
                await asyncio.sleep(profile.redis_outage_s)
            finally:
                await asyncio.to_thread(redis_server.start)
            back_at = time.monotonic()
            await until_online(watcher)
            extra["presence_back_s"] = time.monotonic() - back_at
            assert watcher.is_open, "the watcher's socket closed while Redis was down"
        finally:
            await watcher.close()

    figures = await run_fault(presence_cluster, profile, "redis-down", fault, record_figures, extra)
    assert figures.reconnects == 0, "a socket closed while Redis was down"
