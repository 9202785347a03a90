"""The gRPC access log (CHATMESH_ACCESS_LOG): one line per call with method, code, duration and
peer, refusals included."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from chatmesh_common.logs import JsonFormatter

from .support import ChatHarness, expect_code

pytestmark = pytest.mark.timeout(30)


async def test_every_call_is_logged_with_its_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatmesh.access")
    harness = ChatHarness(tmp_path / "data")
    await harness.start()
    try:
        alice = harness.client("alice")
        await alice.group(harness.client("bob"))
        await expect_code(
            grpc.StatusCode.UNAUTHENTICATED,
            alice.chat.ListConversations(pb.ListConversationsRequest()),
        )
    finally:
        await harness.stop()
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "chatmesh.access"]
    by_method = {line["method"]: line for line in lines}
    created = by_method["/chatmesh.chat.v1.ChatService/CreateConversation"]
    assert created["code"] == "OK" and created["duration_ms"] >= 0
    assert "127.0.0.1" in created["peer"]
    refused = by_method["/chatmesh.chat.v1.ChatService/ListConversations"]
    assert refused["code"] == "UNAUTHENTICATED"
