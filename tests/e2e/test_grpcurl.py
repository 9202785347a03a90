"""Engineers can poke every service with grpcurl: reflection, health, and real calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_service.config import ChatConfig
from chat_service.server import ChatService, build_chat_service
from chatmesh_common.auth import issue_token
from chatmesh_common.clock import SystemClock
from tests.servers.grpcurl import grpcurl

SECRET = "grpcurl-test-secret-of-thirty-two-bytes"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ChatService]:
    running = build_chat_service(
        ChatConfig(jwt_secret=SECRET, data_dir=str(tmp_path), grpc_bind="127.0.0.1:0", drain_s=0),
        clock=SystemClock(),
    )
    await running.start()
    yield running
    await running.stop()


async def _grpcurl(*args: str) -> tuple[int, str, str]:
    return await grpcurl(*args, marker="grpcurl")


async def test_list_shows_every_service(server: ChatService) -> None:
    """`grpcurl -plaintext HOST:PORT list` works with no proto files (server reflection)."""
    code, out, err = await _grpcurl("-plaintext", f"127.0.0.1:{server.port}", "list")
    assert code == 0, err
    assert set(out.split()) >= {
        "chatmesh.chat.v1.ChatService",
        "chatmesh.events.v1.EventService",
        "grpc.health.v1.Health",
    }


async def test_health_check_answers_serving(server: ChatService) -> None:
    """The standard health service reports SERVING for the chat service."""
    code, out, err = await _grpcurl(
        "-plaintext",
        "-d",
        '{"service": "chatmesh.chat.v1.ChatService"}',
        f"127.0.0.1:{server.port}",
        "grpc.health.v1.Health/Check",
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"


async def test_calls_with_a_token_and_json(server: ChatService) -> None:
    """A JSON request with a bearer token creates a conversation and sends into it."""
    auth = f"authorization: Bearer {issue_token(SECRET, 'alice')}"
    target = f"127.0.0.1:{server.port}"
    code, out, err = await _grpcurl(
        "-plaintext",
        "-H",
        auth,
        "-d",
        '{"kind": "CONVERSATION_KIND_DIRECT", "memberIds": ["bob"]}',
        target,
        "chatmesh.chat.v1.ChatService/CreateConversation",
    )
    assert code == 0, err
    # grpcurl prints proto field names (snake_case); it accepts either form as input.
    conversation_id = json.loads(out)["conversation"]["conversation"]["conversation_id"]
    request = {"conversationId": conversation_id, "clientMsgId": "c1", "body": "hi"}
    code, out, err = await _grpcurl(
        "-plaintext",
        "-H",
        auth,
        "-d",
        json.dumps(request),
        target,
        "chatmesh.chat.v1.ChatService/SendMessage",
    )
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == "1"


async def test_missing_token_is_unauthenticated(server: ChatService) -> None:
    """Without a token grpcurl gets UNAUTHENTICATED with a readable message."""
    code, _out, err = await _grpcurl(
        "-plaintext",
        "-d",
        "{}",
        f"127.0.0.1:{server.port}",
        "chatmesh.chat.v1.ChatService/ListConversations",
    )
    assert code != 0
    assert "Unauthenticated" in err and "missing token" in err
