"""The WebSocket edge over TLS: `chatmesh serve gateway` serves wss and calls a `chatmesh serve
chat` that requires mutual TLS, both real processes on one throwaway CA."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidHandshake

from chatmesh_common.auth import issue_token
from tests.gateway.client import GatewayClient
from tests.servers.certs import make_certs
from tests.servers.services import ChatServiceProcess, GatewayProcess, client_ssl_context

pytestmark = pytest.mark.timeout(60)

SECRET = "wss-test-secret-of-at-least-thirty-two-bytes"


@dataclass
class Edge:
    chat: ChatServiceProcess
    gateway: GatewayProcess

    async def connect(self, user: str) -> GatewayClient:
        return await GatewayClient.connect(
            self.gateway.url,
            issue_token(SECRET, user, "phone"),
            ssl=client_ssl_context(self.gateway.tls),
        )


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    """chat_service requiring client certificates, and a gateway serving wss in front of it."""
    tls = make_certs(tmp_path / "certs").env(client_auth=True)
    chat = ChatServiceProcess(
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_DATA_DIR": str(tmp_path / "data"), **tls},
        tmp_path / "chat.log",
    )
    gateway = GatewayProcess(
        {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_CHAT_TARGET": chat.target, **tls},
        tmp_path / "gateway.log",
    )
    try:
        await asyncio.gather(chat.start(), gateway.start())
        yield Edge(chat, gateway)
    finally:
        await gateway.stop()
        await chat.close()


async def test_a_message_crosses_wss_and_the_mutual_tls_hop(edge: Edge) -> None:
    """Over wss a send is acked and the other member gets its event; the gateway reached
    chat_service only by presenting its certificate."""
    assert edge.gateway.url.startswith("wss://")
    alice, bob = await edge.connect("alice"), await edge.connect("bob")
    try:
        created = await alice.call(
            "create_conversation", kind="CONVERSATION_KIND_DIRECT", member_ids=["bob"]
        )
        cid = created.create_conversation.conversation.conversation.conversation_id
        sent = await alice.call(
            "send_message", conversation_id=cid, client_msg_id="m1", body="over tls"
        )
        assert sent.send_message.message.seq == 1
        async with asyncio.timeout(20):
            while True:
                event = await bob.next_event()
                if event.conversation_id == cid and event.seq == 1:
                    break
        assert event.message_created.message.body == "over tls"
    finally:
        await alice.close()
        await bob.close()


async def test_wss_listener_refuses_a_plaintext_socket(edge: Edge) -> None:
    """A ws:// client on the wss port never gets a WebSocket."""
    plain = edge.gateway.url.replace("wss://", "ws://")
    # The TLS listener answers the plaintext request with no HTTP response.
    with pytest.raises(InvalidHandshake):
        await GatewayClient.connect(plain, issue_token(SECRET, "carol", "phone"), timeout_s=10)
