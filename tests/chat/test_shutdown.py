"""Graceful shutdown: health goes NOT_SERVING, the drain window passes with calls still served,
then the server stops and in-flight calls finish within the grace period."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh_common.service import Health

from .support import ChatHarness

pytestmark = pytest.mark.timeout(20)

# Long enough that a loaded machine still sees the window, short enough to keep the test quick.
DRAIN_S = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def draining(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    """chat_service with a drain window, so a stop takes DRAIN_S before the server stops."""
    harness = ChatHarness(tmp_path / "chat-data", drain_s=DRAIN_S)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def test_a_send_started_before_the_stop_gets_its_ack(draining: ChatHarness) -> None:
    """A send on its way when the stop begins is answered OK, not refused or cut off."""
    alice, bob = draining.client("alice"), draining.client("bob")
    direct = await alice.direct(bob)
    assert draining.server is not None
    send = asyncio.ensure_future(alice.send(direct, "last words"))
    stop = asyncio.ensure_future(draining.server.stop())
    reply = await send
    assert reply.message.body == "last words"
    await stop
    assert draining.server.health is Health.STOPPED


async def test_health_is_not_serving_during_the_drain_window(draining: ChatHarness) -> None:
    """Once stopping, health answers NOT_SERVING for the drain window; sends still succeed."""
    alice, bob = draining.client("alice"), draining.client("bob")
    direct = await alice.direct(bob)
    health = health_pb2_grpc.HealthStub(draining.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING
    assert draining.server is not None
    stop = asyncio.ensure_future(draining.server.stop())
    async with asyncio.timeout(DRAIN_S):
        while (await health.Check(health_pb2.HealthCheckRequest())).status != NOT_SERVING:
            pass
    named = health_pb2.HealthCheckRequest(service="chatmesh.chat.v1.ChatService")
    assert (await health.Check(named)).status == NOT_SERVING
    assert draining.server.health is Health.NOT_SERVING
    assert (await alice.send(direct, "during the drain")).message.seq == 1
    assert not stop.done(), "the drain window ended before the checks"
    await stop


async def test_a_second_stop_waits_for_the_first(draining: ChatHarness) -> None:
    """Two stops (a signal during a stop, say) share one shutdown and both return once it ends."""
    assert draining.server is not None
    first = asyncio.ensure_future(draining.server.stop())
    second = asyncio.ensure_future(draining.server.stop())
    await asyncio.gather(first, second)
    assert draining.server.health is Health.STOPPED
