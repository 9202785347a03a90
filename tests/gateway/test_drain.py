"""The gateway's stop: /healthz answers 503 for the drain window while sockets keep working, then
open sockets are closed with 1001."""

from __future__ import annotations

import asyncio

import pytest

from chatmesh_common.clock import SystemClock
from chatmesh_common.service import Health
from gateway_ws.server import build_gateway_service
from tests.gateway.client import GatewayClient
from tests.gateway.conftest import base_config, token
from tests.gateway.fake_chat import FakeChat

pytestmark = pytest.mark.timeout(20)

DRAIN_S = 1.0


async def _healthz(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status.split()[1])


async def test_healthz_is_503_during_the_drain_window(fake_chat: FakeChat) -> None:
    """Stopping: /healthz says 503 at once, a connected socket still works, then it gets 1001."""
    service = build_gateway_service(
        base_config(chat_target=fake_chat.target, drain_s=DRAIN_S), clock=SystemClock()
    )
    await service.start()
    client = await GatewayClient.connect(service.url, token("alice"))
    try:
        assert await _healthz(service.port) == 200
        stop = asyncio.ensure_future(service.stop())
        while await _healthz(service.port) != 503:
            pass
        draining_health = service.health
        assert draining_health is Health.NOT_SERVING
        await client.ping()
        assert not stop.done(), "the drain window ended before the checks"
        await stop
        assert service.health is Health.STOPPED
        code, _reason = await client.closed()
        assert code == 1001
    finally:
        await client.close()
        await service.stop()
