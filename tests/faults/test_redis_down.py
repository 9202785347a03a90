"""Redis (presence) down while devices send: chat goes on untouched, no socket closes, and once
Redis is back (empty) the next heartbeats show the users online again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb

from tests.bus_nats.cluster import token
from tests.gateway.client import GatewayClient, ServerError
from tests.servers.redis import RedisServer

from .check import Figures
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.redis,
    pytest.mark.timeout(current_profile().timeout_s),
]

# Users of the first group of every run (scenario._create_groups): they share a conversation,
# so each may see the other's presence.
WATCHED, WATCHER = "u0x0", "u0x1"
ONLINE_GUARD_S = 60.0


async def _online(watcher: GatewayClient) -> bool:
    try:
        answer = await watcher.call("presence_subscribe", user_ids=[WATCHED], timeout_s=10)
    except (ServerError, TimeoutError):
        return False  # presence is best effort: an error while Redis is away
    presences = answer.presence_subscribe.presences
    return bool(presences) and presences[0].state == presence_pb.PRESENCE_STATE_ONLINE


async def _until_online(watcher: GatewayClient) -> None:
    async with asyncio.timeout(ONLINE_GUARD_S):
        while True:
            if await _online(watcher):
                return
            await asyncio.sleep(0.2)


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
            await _until_online(watcher)
            await asyncio.to_thread(redis_server.stop)
            try:
                await asyncio.sleep(profile.redis_outage_s)
            finally:
                await asyncio.to_thread(redis_server.start)
            back_at = time.monotonic()
            await _until_online(watcher)
            extra["presence_back_s"] = time.monotonic() - back_at
            assert watcher.is_open, "the watcher's socket closed while Redis was down"
        finally:
            await watcher.close()

    figures = await run_fault(presence_cluster, profile, "redis-down", fault, record_figures, extra)
    assert figures.reconnects == 0, "a socket closed while Redis was down"
