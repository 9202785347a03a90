"""Presence on a real Redis: rebuilt from heartbeats after Redis restarts, messages unaffected
while it is down, and vanished devices expired by the running sweep in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chatmesh.presence.v1 import presence_service_pb2 as ppb

from chatmesh_common.clock import SystemClock
from presence_service.backends.redis import RedisPresenceBackend
from presence_service.config import PresenceConfig
from tests.chat.support import SECRET, SERVICE_SECRET, expect_code
from tests.servers.binaries import require_binary
from tests.servers.redis import RedisServer

from .support import PresenceHarness

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def own_redis(tmp_path: Path) -> RedisServer:
    """A redis-server of this test alone, so restarting it disturbs no other test."""
    return RedisServer(require_binary("redis-server", "redis"), tmp_path / "redis")


@pytest.fixture
async def on_own_redis(own_redis: RedisServer, tmp_path: Path) -> AsyncIterator[PresenceHarness]:
    with own_redis:
        harness = PresenceHarness(tmp_path / "chat", RedisPresenceBackend(own_redis.url))
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()


async def test_presence_rebuilt_from_heartbeats_after_redis_restart(
    on_own_redis: PresenceHarness, own_redis: RedisServer
) -> None:
    """Redis down: sends still succeed, presence answers UNAVAILABLE fast. Redis back empty: the
    next heartbeat (due within a third of the TTL) restores online state and a lost invisible
    status."""
    system = on_own_redis
    alice, bob, carol = system.client("alice"), system.client("bob"), system.client("carol")
    cid = await alice.group(bob, carol)
    await alice.connect()
    await carol.connect()
    await carol.set_status(ppb.USER_STATUS_INVISIBLE)
    assert (await bob.state_of(alice)).state == ppb.PRESENCE_STATE_ONLINE

    await asyncio.to_thread(own_redis.stop)
    sent = await alice.send(cid, "still works while Redis is down")
    assert sent.message.seq >= 1
    started = time.monotonic()
    await expect_code(grpc.StatusCode.UNAVAILABLE, alice.heartbeat())
    await expect_code(grpc.StatusCode.UNAVAILABLE, bob.get(alice))
    assert time.monotonic() - started < 5, "presence calls must fail fast while Redis is down"

    await asyncio.to_thread(own_redis.start)
    assert (await bob.state_of(alice)).state == ppb.PRESENCE_STATE_OFFLINE  # memory lost
    await alice.heartbeat()
    await carol.heartbeat(known_status=ppb.USER_STATUS_INVISIBLE)
    assert (await bob.state_of(alice)).state == ppb.PRESENCE_STATE_ONLINE
    assert (await bob.state_of(carol)).state == ppb.PRESENCE_STATE_OFFLINE
    history = await bob.history(cid)
    assert [m.body for m in history.messages] == ["still works while Redis is down"]


async def test_running_sweep_expires_a_vanished_device_in_real_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With the sweep running, a device that just stops is offline within TTL + sweep interval."""
    config = PresenceConfig(
        jwt_secret=SECRET,
        service_secret=SERVICE_SECRET,
        ttl_s=1.0,
        sweep_interval_s=0.2,
        access_cache_s=0,
    )
    backend = RedisPresenceBackend(redis_server.url, prefix=f"rt:{time.time_ns()}:")
    system = PresenceHarness(tmp_path / "chat", backend, SystemClock(), config)
    await system.start()
    try:
        assert system.presence is not None
        system.presence.start()
        alice, bob = system.client("alice"), system.client("bob")
        await alice.group(bob)
        watcher = await bob.watch(alice)
        await alice.connect()
        gone_at = time.monotonic()
        assert (await watcher.next_presence()).state == ppb.PRESENCE_STATE_ONLINE
        offline = await watcher.next_presence()
        elapsed = time.monotonic() - gone_at
        assert offline.state == ppb.PRESENCE_STATE_OFFLINE and offline.HasField("last_seen")
        assert 0.9 <= elapsed <= 1.0 + 0.2 + 0.5
        watcher.close()
    finally:
        await system.stop()
