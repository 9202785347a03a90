"""A client frame's request_id follows it into the services' logs: the gateway passes it as
`x-request-id`, and the access log line of each call it made carries it (here through `chatmesh
dev`'s in-process channel, the path dev's gateway uses)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatmesh_common.auth import issue_token
from chatmesh_common.clock import SystemClock
from chatmesh_common.logs import JsonFormatter
from chatmesh_common.request_id import request_id_metadata, request_id_of
from chatmesh_launcher.dev import DevOptions, DevSystem, dev_process
from tests.gateway.client import GatewayClient

pytestmark = pytest.mark.timeout(60)

SECRET = "request-id-secret-of-at-least-thirty-two-bytes"


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[DevSystem]:
    options = DevOptions(str(tmp_path / "data"), "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
    env = {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_LOG_LEVEL": "WARNING"}
    service = dev_process(options, SystemClock(), env).service
    assert isinstance(service, DevSystem)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "chatmesh.access"
    ]


async def test_a_send_is_logged_with_its_request_id(
    system: DevSystem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatmesh.access")
    client = await GatewayClient.connect(system.gateway.url, issue_token(SECRET, "alice", "p"))
    try:
        cid = await client.create_group("bob")
        frame = client.frame(
            "send_message", request_id="trace-7", conversation_id=cid, client_msg_id="m", body="x"
        )
        answer = await client.request(frame)
        assert answer.WhichOneof("frame") == "send_message"
    finally:
        await client.ws.close()
    sends = [
        line
        for line in _access_lines(caplog)
        if line["method"] == "/chatmesh.chat.v1.ChatService/SendMessage"
    ]
    assert [line["request_id"] for line in sends] == ["trace-7"]
    assert sends[0]["code"] == "OK"


def test_a_request_id_grpc_cannot_carry_is_left_out() -> None:
    """Metadata values are printable ASCII; a client may pick any string as its id."""
    assert request_id_metadata("r-1") == (("x-request-id", "r-1"),)
    assert request_id_metadata("") == ()
    assert request_id_metadata("ünïcode") == ()
    assert request_id_metadata("line\nbreak") == ()
    assert request_id_of((("x-request-id", b"r-2"),)) == "r-2"
    assert request_id_of(None) == ""
