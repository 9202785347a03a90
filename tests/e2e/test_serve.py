"""`chatmesh serve chat|presence|gateway` as real processes: they serve, drain on SIGTERM and exit
0; a configuration error is one line on stderr and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token
from tests.servers.services import (
    REPO,
    ChatServiceProcess,
    GatewayProcess,
    PresenceServiceProcess,
    ServiceProcess,
    grpc_serving,
)

pytestmark = pytest.mark.timeout(60)

SECRET = "serve-test-secret-of-at-least-thirty-two-bytes"
SERVICE_SECRET = "serve-test-service-secret-of-at-least-thirty-two-bytes"


async def _stops_cleanly(process: ServiceProcess) -> None:
    await process.stop()
    assert process.process.process is not None
    assert process.process.process.returncode == 0, process.process.log_tail()


async def _creates_a_conversation(chat: ChatServiceProcess) -> bool:
    reply = await chat_service_pb2_grpc.ChatServiceStub(chat.channel).CreateConversation(
        pb.CreateConversationRequest(kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=["bob"]),
        metadata=auth_metadata(issue_token(SECRET, "alice")),
        timeout=10,
    )
    return bool(reply.created)


async def test_serve_chat_runs_chat_service(tmp_path: Path) -> None:
    """`chatmesh serve chat` serves ChatService on its port and exits 0 on SIGTERM."""
    env = {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_DATA_DIR": str(tmp_path / "data")}
    chat = ChatServiceProcess(env, tmp_path / "chat.log")
    await chat.start()
    try:
        assert await _creates_a_conversation(chat)
        await _stops_cleanly(chat)
    finally:
        await chat.close()


async def test_serve_presence_runs_presence_service(tmp_path: Path) -> None:
    """`chatmesh serve presence` serves health SERVING and exits 0 on SIGTERM."""
    presence = PresenceServiceProcess(
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_SERVICE_SECRET": SERVICE_SECRET},
        tmp_path / "presence.log",
    )
    await presence.start()
    try:
        assert grpc_serving(presence.target)()
        await _stops_cleanly(presence)
    finally:
        await presence.stop()


async def test_serve_gateway_runs_the_gateway(tmp_path: Path) -> None:
    """`chatmesh serve gateway` answers /healthz and exits 0 on SIGTERM."""
    gateway = GatewayProcess(
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_CHAT_TARGET": "127.0.0.1:1"},
        tmp_path / "gateway.log",
    )
    await gateway.start()
    try:
        await _stops_cleanly(gateway)
    finally:
        await gateway.stop()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["-m", "chatmesh_launcher", "serve", "chat"], "chat_service"),
        (["-m", "chat_service"], "chat_service"),
        (["-m", "chatmesh_launcher", "serve", "presence"], "presence_service"),
        (["-m", "gateway_ws"], "gateway_ws"),
    ],
)
def test_a_missing_secret_is_one_line_and_exit_2(args: list[str], name: str) -> None:
    """No CHATMESH_JWT_SECRET: `chatmesh: <service>: <message>` on stderr, no traceback."""
    result = _run(args, {})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"chatmesh: {name}: CHATMESH_JWT_SECRET is required"
        " (the HS256 secret user tokens are signed with)"
    ]


def test_cluster_mode_on_embedded_backends_is_refused_at_start_up() -> None:
    """CHATMESH_MODE=cluster with the default SQLite store does not start: exit 2, one line."""
    result = _run(
        ["-m", "chatmesh_launcher", "serve", "chat"],
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_MODE": "cluster"},
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("chatmesh: chat_service: CHATMESH_MODE=cluster refuses the SQLite")


def test_a_malformed_value_names_the_variable() -> None:
    """A bad number stops the gateway with the variable's name."""
    result = _run(
        ["-m", "chatmesh_launcher", "serve", "gateway"],
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_WS_PORT": "eighty"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "chatmesh: gateway_ws: CHATMESH_WS_PORT must be an integer, got 'eighty'"
    ]


async def test_chat_process_drains_before_it_stops(tmp_path: Path) -> None:
    """With CHATMESH_DRAIN_S, SIGTERM first turns health NOT_SERVING while calls still work."""
    env = {
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_DATA_DIR": str(tmp_path / "data"),
        "CHATMESH_DRAIN_S": "2",
    }
    chat = ChatServiceProcess(env, tmp_path / "chat.log")
    await chat.start()
    try:
        assert chat.process.process is not None
        chat.process.process.terminate()
        health = health_pb2_grpc.HealthStub(chat.channel)
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status != (
            not_serving
        ):
            pass
        assert await _creates_a_conversation(chat)
        await _stops_cleanly(chat)
    finally:
        await chat.close()
