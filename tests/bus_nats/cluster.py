"""chat_service and gateway_ws as real processes on free ports, sharing one NATS and one SQLite.

chat = ChatProcess("a", data_dir, nats_url, log_dir); await chat.start()
gateway = GatewayProcess("g1", chat.target, log_dir); await gateway.start()
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token
from tests.servers.services import ChatServiceProcess
from tests.servers.services import GatewayProcess as GatewayServiceProcess

SECRET = "bus-nats-tests-secret-of-at-least-32-bytes"


def token(user_id: str, device_id: str = "phone") -> str:
    return issue_token(SECRET, user_id, device_id, ttl_s=3600)


class ChatProcess(ChatServiceProcess):
    """`python -m chat_service` on the NATS bus; the channel survives restarts of the process."""

    def __init__(self, name: str, data_dir: Path, nats_url: str, log_dir: Path, **env: str) -> None:
        super().__init__(
            {
                "CHATMESH_JWT_SECRET": SECRET,
                "CHATMESH_DATA_DIR": str(data_dir),
                "CHATMESH_BUS": "nats",
                "CHATMESH_NATS_URLS": nats_url,
                "CHATMESH_RELAY_SWEEP_S": "0.5",
                **env,
            },
            log_dir / f"chat-{name}.log",
        )
        self.name = name
        self.data_dir = data_dir


class GatewayProcess(GatewayServiceProcess):
    """`python -m gateway_ws` in front of one chat_service; restartable on the same port."""

    def __init__(self, name: str, chat_target: str, log_dir: Path, **env: str) -> None:
        super().__init__(
            {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_CHAT_TARGET": chat_target, **env},
            log_dir / f"gateway-{name}.log",
        )
        self.name = name


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
