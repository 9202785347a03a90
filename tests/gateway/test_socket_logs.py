"""The gateway's operator log: one JSON line per socket opened and closed (user, device, peer,
close code and reason, duration) and per refused token."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from chatmesh_common.logs import FIELDS, JsonFormatter

from .client import GatewayClient
from .conftest import GatewayFactory, token
from .fake_chat import FakeChat

pytestmark = pytest.mark.timeout(30)


class _Seen(logging.Handler):
    """Sets `event` when a record with this message is logged (the server side is done)."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.event.set()


def _lines(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "gateway_ws.sockets" and r.getMessage() == message
    ]


async def test_open_and_close_are_logged_with_who_and_how(
    gateway_factory: GatewayFactory, fake_chat: FakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_ws.sockets")
    closed = _Seen("socket closed")
    logging.getLogger("gateway_ws.sockets").addHandler(closed)
    try:
        gateway = await gateway_factory(fake_chat.target)
        client = await GatewayClient.connect(gateway.url, token("alice", "phone"))
        await client.close()
        async with asyncio.timeout(10):
            await closed.event.wait()
    finally:
        logging.getLogger("gateway_ws.sockets").removeHandler(closed)
    assert _lines(caplog, "socket open")[0]["peer"] == "127.0.0.1"
    (line,) = _lines(caplog, "socket closed")
    assert line["user"] == "alice" and line["device"] == "phone"
    assert line["code"] == 1000 and line["peer"] == "127.0.0.1"
    assert isinstance(line["duration_s"], float)


async def test_a_refused_token_is_logged_with_the_reason(
    gateway_factory: GatewayFactory, fake_chat: FakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_ws.sockets")
    gateway = await gateway_factory(fake_chat.target)
    bad = await GatewayClient.connect(gateway.url, "not-a-token", expect_ready=False)
    await bad.closed()
    (line,) = _lines(caplog, "authentication refused")
    assert "invalid token" in str(line["reason"])


def test_fields_render_beside_the_message() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    setattr(record, FIELDS, {"user": "alice", "code": 1000})
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello" and line["user"] == "alice" and line["code"] == 1000
