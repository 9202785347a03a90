"""Smoke tests: the server fixtures start real servers that real clients can talk to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis

from tests.servers.binaries import require_binary
from tests.servers.nats import NatsServer
from tests.servers.redis import RedisServer


@pytest.mark.nats
async def test_nats_publish_subscribe_and_jetstream(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        sub = await nc.subscribe("smoke.core")
        await nc.publish("smoke.core", b"hello")
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b"hello"

        js = nc.jetstream()
        await js.add_stream(name="SMOKE", subjects=["smoke.js"])
        ack = await js.publish("smoke.js", b"durable")
        assert ack.stream == "SMOKE"
    finally:
        await nc.close()


@pytest.mark.nats
async def test_nats_restart_keeps_port_and_store(tmp_path: Path) -> None:
    with NatsServer(require_binary("nats-server", "nats"), tmp_path) as server:
        port = server.port
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="KEPT", subjects=["kept"])
        await nc.jetstream().publish("kept", b"1")
        await nc.close()

        await asyncio.to_thread(server.restart)

        assert server.port == port
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().stream_info("KEPT")
            assert info.state.messages == 1
        finally:
            await nc.close()


@pytest.mark.redis
async def test_redis_set_get(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set("smoke:key", "value")
        assert await client.get("smoke:key") == b"value"
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_restart_keeps_port_and_starts_empty(tmp_path: Path) -> None:
    with RedisServer(require_binary("redis-server", "redis"), tmp_path) as server:
        port = server.port
        client = aioredis.Redis.from_url(server.url)
        await client.set("gone", "soon")
        await client.aclose()

        await asyncio.to_thread(server.restart)

        assert server.port == port
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.get("gone") is None
        finally:
            await client.aclose()
