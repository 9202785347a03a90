"""The gateway's keepalive: a ping every heartbeat interval from its sweep (no task per socket),
and a socket silent for three intervals closed with 1011."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from chatmesh_common.logs import JsonFormatter

from .client import GatewayClient, eventually
from .conftest import GatewayFactory, token
from .fake_chat import FakeChat

pytestmark = pytest.mark.timeout(30)

# Short enough to see several intervals pass; the sweep runs every interval / 4.
HEARTBEAT_S = 0.4


async def test_a_socket_that_answers_pings_stays_open_and_holds_no_keepalive_task(
    gateway_factory: GatewayFactory, fake_chat: FakeChat
) -> None:
    """Pings are answered (websockets' client does it), so the socket outlives many intervals."""
    gateway = await gateway_factory(fake_chat.target, heartbeat_interval_s=HEARTBEAT_S)
    client = await GatewayClient.connect(gateway.url, token("alice"))
    try:
        (session,) = gateway._context.sessions
        pinged_at = session._ping_at
        await asyncio.sleep(HEARTBEAT_S * 5)
        assert client.is_open
        assert session._ping_at > pinged_at  # pinged since the open
        assert session._ws.keepalive_task is None  # websockets' own keepalive is off
        answer = await client.call("ping")
        assert answer.WhichOneof("frame") == "pong"
    finally:
        await client.close()


async def test_a_socket_silent_three_intervals_is_closed_with_1011(
    gateway_factory: GatewayFactory, fake_chat: FakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading answers no ping: the gateway closes it (code 1011)."""
    caplog.set_level(logging.INFO, logger="gateway_ws.sockets")
    gateway = await gateway_factory(
        fake_chat.target, heartbeat_interval_s=HEARTBEAT_S, close_timeout_s=0.5
    )
    client = await GatewayClient.connect(gateway.url, token("alice"))
    try:
        client.ws.transport.pause_reading()  # no pongs from here on
        await eventually(lambda: gateway.connection_count == 0, timeout_s=15)
    finally:
        client.ws.transport.abort()
        await asyncio.gather(client._reader, return_exceptions=True)
    formatter = JsonFormatter()
    (line,) = [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "gateway_ws.sockets" and r.getMessage() == "socket closed"
    ]
    assert line["code"] == 1011 and line["reason"] == "keepalive ping timeout"
    # Silent from the pause: not closed before the ping plus two intervals.
    assert line["duration_s"] >= HEARTBEAT_S * 3 - 0.05
