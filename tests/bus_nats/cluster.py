"""chat_service and gateway_ws as real processes on free ports, sharing one NATS and one SQLite.

chat = ChatProcess("a", data_dir, nats_url, log_dir); await chat.start()
gateway = GatewayProcess("g1", chat.target, log_dir); await gateway.start()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers.ports import free_port

from chatmesh_common.auth import auth_metadata, issue_token

SECRET = "bus-nats-tests-secret-of-at-least-32-bytes"


def token(user_id: str, device_id: str = "phone") -> str:
    return issue_token(SECRET, user_id, device_id, ttl_s=3600)


class _Process:
    name: str
    log_path: Path
    process: asyncio.subprocess.Process | None = None

    async def _spawn(self, module: str, env: Mapping[str, str]) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                env={**os.environ, "CHATMESH_LOG_LEVEL": "WARNING", **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            pytest.fail(
                f"{self.name} exited with {self.process.returncode}:\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()


class ChatProcess(_Process):
    """`python -m chat_service` on the NATS bus; the channel survives restarts of the process."""

    def __init__(self, name: str, data_dir: Path, nats_url: str, log_dir: Path, **env: str) -> None:
        self.name = name
        self.data_dir = data_dir
        self.nats_url = nats_url
        self.log_path = log_dir / f"chat-{name}.log"
        self.port = free_port()
        self.env = env
        self.channel = grpc.aio.insecure_channel(self.target)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._spawn(
            "chat_service",
            {
                "CHATMESH_JWT_SECRET": SECRET,
                "CHATMESH_DATA_DIR": str(self.data_dir),
                "CHATMESH_GRPC_BIND": self.target,
                "CHATMESH_METRICS_PORT": "-1",
                "CHATMESH_BUS": "nats",
                "CHATMESH_NATS_URLS": self.nats_url,
                "CHATMESH_RELAY_SWEEP_S": "0.5",
                **self.env,
            },
        )
        health = health_pb2_grpc.HealthStub(self.channel)
        async with asyncio.timeout(20):
            while True:
                self._check_alive()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.stop()
        await self.channel.close(None)


class GatewayProcess(_Process):
    """`python -m gateway_ws` in front of one chat_service; restartable on the same port."""

    def __init__(self, name: str, chat_target: str, log_dir: Path, **env: str) -> None:
        self.name = name
        self.chat_target = chat_target
        self.log_path = log_dir / f"gateway-{name}.log"
        self.port = free_port()
        self.env = env

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def start(self) -> None:
        await self._spawn(
            "gateway_ws",
            {
                "CHATMESH_JWT_SECRET": SECRET,
                "CHATMESH_WS_HOST": "127.0.0.1",
                "CHATMESH_WS_PORT": str(self.port),
                "CHATMESH_CHAT_TARGET": self.chat_target,
                "CHATMESH_WS_METRICS_PORT": "-1",
                **self.env,
            },
        )
        async with asyncio.timeout(20):
            while True:
                self._check_alive()
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return


class Api:
    """One user's ChatService calls on a chat_service process (for set-up and sends)."""

    def __init__(self, chat: ChatProcess, user_id: str) -> None:
        self.user_id = user_id
        self.md = auth_metadata(token(user_id, "api"))
        self.stub: Any = chat_service_pb2_grpc.ChatServiceStub(chat.channel)

    async def create(self, kind: int, *members: str, title: str = "") -> str:
        reply = await self.stub.CreateConversation(
            pb.CreateConversationRequest(
                kind=kind,  # type: ignore[arg-type]
                title=title,
                member_ids=list(members),
            ),
            metadata=self.md,
        )
        return str(reply.conversation.conversation.conversation_id)

    async def send(self, conversation_id: str, client_msg_id: str, body: str) -> int:
        """Sends, retrying UNAVAILABLE with the same key (SPEC: safe to retry)."""
        request = pb.SendMessageRequest(
            conversation_id=conversation_id, client_msg_id=client_msg_id, body=body
        )
        for _ in range(100):
            try:
                reply = await self.stub.SendMessage(request, metadata=self.md, timeout=5)
                return int(reply.message.seq)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                await asyncio.sleep(0.1)
        raise AssertionError("send never succeeded")
