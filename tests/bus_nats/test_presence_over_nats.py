"""presence_service and chat_service as separate servers sharing only NATS: typing crosses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chat_service.config import ChatConfig
from chat_service.server import build_chat_service
from chatmesh_common.auth import auth_metadata
from chatmesh_common.bus.nats_settings import NatsSettings
from chatmesh_common.clock import SystemClock
from presence_service.config import PresenceConfig
from presence_service.server import build_presence_service
from tests.servers.nats import NatsServer

from .cluster import SECRET, token

# Signs presence_service's AccessService calls to chat_service.
SERVICE_SECRET = "presence-over-nats-service-secret"

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


async def test_typing_reaches_an_event_stream_on_another_server(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """bob types through presence_service; alice's chat_service event stream gets it via NATS."""
    nats = NatsSettings(urls=(nats_server.url,))
    clock = SystemClock()
    chat = build_chat_service(
        ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(tmp_path),
            grpc_bind="127.0.0.1:0",
            bus="nats",
            nats=nats,
            drain_s=0,
        ),
        clock=clock,
    )
    await chat.start()
    presence = build_presence_service(
        PresenceConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            bus="nats",
            nats=nats,
            chat_target=f"127.0.0.1:{chat.port}",
            drain_s=0,
        ),
        clock=clock,
    )
    await presence.start()
    chat_channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
    presence_channel = grpc.aio.insecure_channel(f"127.0.0.1:{presence.port}")
    alice, bob = auth_metadata(token("alice")), auth_metadata(token("bob"))
    try:
        created = await chat_service_pb2_grpc.ChatServiceStub(chat_channel).CreateConversation(
            chat_pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=["bob"]
            ),
            metadata=alice,
        )
        cid = created.conversation.conversation.conversation_id
        stream = event_service_pb2_grpc.EventServiceStub(chat_channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(), metadata=alice
        )
        first = await stream.read()
        assert isinstance(first, event_service_pb2.SubscribeEventsResponse)
        assert first.HasField("caught_up")
        await presence_service_pb2_grpc.PresenceServiceStub(presence_channel).SendTyping(
            presence_pb.SendTypingRequest(conversation_id=cid, typing=True), metadata=bob
        )
        async with asyncio.timeout(10):
            while True:
                item = await stream.read()
                assert isinstance(item, event_service_pb2.SubscribeEventsResponse)
                if item.event.HasField("typing_changed"):
                    break
        assert item.event.conversation_id == cid
        assert item.event.typing_changed.user_id == "bob" and item.event.typing_changed.typing
        stream.cancel()
    finally:
        await presence_channel.close(None)
        await chat_channel.close(None)
        await presence.stop()
        await chat.stop()
