"""Builds chat_service's dependencies in one place and serves them over gRPC."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from chatmesh.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc

from chatmesh_common.auth import TokenVerifier
from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.grpc_server import GrpcServer, Registration, start_grpc_server

from .chat import Chat, Limits
from .config import ChatConfig
from .fanout import Fanout
from .servicer import ChatServicer, EventServicer
from .store.base import ChatStore
from .store.sqlite import SqliteChatStore

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
)


def build_store(config: ChatConfig) -> ChatStore:
    if config.store == "sqlite":
        return SqliteChatStore(Path(config.data_dir) / "chat.sqlite3")
    raise ValueError(f"unknown store {config.store!r}")


def build_registrations(config: ChatConfig, store: ChatStore, bus: Bus) -> list[Registration]:
    """The servicers of chat_service, for a server of its own or one shared with others."""
    verifier = TokenVerifier(config.jwt_secret)
    limits = Limits(
        max_body_bytes=config.max_body_bytes,
        max_group_members=config.max_group_members,
        default_page=config.default_page,
        max_page=config.max_page,
    )
    chat = Chat(store, Fanout(bus, store), limits)
    return [
        (chat_service_pb2_grpc.add_ChatServiceServicer_to_server, ChatServicer(chat, verifier)),
        (
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            EventServicer(chat, bus, verifier),
        ),
    ]


@dataclass
class ChatServer:
    grpc: GrpcServer
    store: ChatStore
    bus: Bus
    grace_s: float

    @property
    def port(self) -> int:
        return self.grpc.port

    async def stop(self) -> None:
        await self.grpc.stop(self.grace_s)
        await self.bus.close()
        await self.store.close()


async def start_chat_server(config: ChatConfig, bus: Bus | None = None) -> ChatServer:
    store = build_store(config)
    await store.open()
    bus = bus or InProcessBus()
    server = await start_grpc_server(
        config.grpc_bind, build_registrations(config, store, bus), SERVICE_NAMES
    )
    return ChatServer(server, store, bus, config.shutdown_grace_s)
