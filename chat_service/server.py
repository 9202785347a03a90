"""Builds chat_service's dependencies in one place and serves them over gRPC."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from chatmesh.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.grpc_server import GrpcServer, Registration, start_grpc_server
from chatmesh_common.limits import Limits
from chatmesh_common.rpc import Authenticator

from .access import ACCESS_SERVICE_NAME, access_registration
from .chat import Chat
from .config import ChatConfig
from .events import EventSink
from .fanout import Fanout
from .relay import Relay
from .retention import RetentionSweeper, retention_periods
from .servicer import ChatServicer, EventServicer
from .store.base import ChatStore
from .store.sqlite import SqliteChatStore

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    ACCESS_SERVICE_NAME,
)


def build_store(config: ChatConfig) -> ChatStore:
    if config.store == "scylla":
        if config.scylla is None:
            raise ValueError("store 'scylla' needs its settings")
        return config.scylla.build_store()
    if config.store == "sqlite":
        return SqliteChatStore(Path(config.data_dir) / "chat.sqlite3")
    raise ValueError(f"unknown store {config.store!r}")


async def build_bus(config: ChatConfig) -> Bus:
    """The bus named by the config; for NATS, connected and with its stream and consumers."""
    if config.bus == "inprocess":
        return InProcessBus()
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        bus = await NatsBus.connect(config.nats)
        try:
            await bus.ensure_stream()
            await bus.ensure_consumers()
        except BaseException:
            await bus.close()
            raise
        return bus
    raise ValueError(f"unknown bus {config.bus!r}")


@dataclass
class ChatComponents:
    """chat_service's pieces for a server of its own or one shared with other services."""

    registrations: list[Registration]
    chat: Chat
    relay: Relay
    sweeper: RetentionSweeper

    async def start(self) -> None:
        """Starts the background tasks: the relay (its first sweep publishes whatever an
        earlier process left) and the retention sweeper (idle when nothing has a retention)."""
        await self.relay.start()
        await self.sweeper.start()

    async def stop(self) -> None:
        """Stops the background tasks; call after the gRPC server has drained."""
        await self.sweeper.stop()
        await self.relay.stop()


def build_authenticator(config: ChatConfig) -> Authenticator:
    """User tokens for the user RPCs; service tokens (when a service secret is set) for
    AccessService, which refuses every caller without one."""
    if not config.service_secret:
        log.warning("no CHATMESH_SERVICE_SECRET: AccessService refuses every call")
    return Authenticator.from_secrets(config.jwt_secret, config.service_secret)


def build_components(config: ChatConfig, store: ChatStore, bus: Bus) -> ChatComponents:
    authenticator = build_authenticator(config)
    limits = Limits(
        max_body_bytes=config.max_body_bytes,
        max_group_members=config.max_group_members,
        default_page=config.default_page,
        max_page=config.max_page,
    )
    fanout = Fanout(bus, store, config.fanout_read_threshold)
    relay = Relay(store, bus, fanout, sweep_interval_s=config.relay_sweep_s)
    chat = Chat(store, EventSink(fanout, relay), limits)
    registrations: list[Registration] = [
        (
            chat_service_pb2_grpc.add_ChatServiceServicer_to_server,
            ChatServicer(chat, authenticator),
        ),
        (
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            EventServicer(chat, bus, authenticator),
        ),
        access_registration(chat, authenticator),
    ]
    sweeper = RetentionSweeper(
        store, retention_periods(config), interval_s=config.retention_sweep_s
    )
    return ChatComponents(registrations, chat, relay, sweeper)


@dataclass
class ChatServer:
    grpc: GrpcServer
    store: ChatStore
    bus: Bus
    components: ChatComponents
    grace_s: float

    @property
    def relay(self) -> Relay:
        return self.components.relay

    @property
    def port(self) -> int:
        return self.grpc.port

    async def stop(self) -> None:
        await self.grpc.stop(self.grace_s)
        await self.components.stop()
        await self.bus.close()
        await self.store.close()


async def start_chat_server(config: ChatConfig, bus: Bus | None = None) -> ChatServer:
    store = build_store(config)
    await store.open()
    try:
        bus = bus or await build_bus(config)
    except BaseException:
        await store.close()
        raise
    components = build_components(config, store, bus)
    # The background tasks start first: the relay's first sweep publishes whatever an earlier
    # process left.
    await components.start()
    try:
        server = await start_grpc_server(config.grpc_bind, components.registrations, SERVICE_NAMES)
    except BaseException:
        await components.stop()
        await bus.close()
        await store.close()
        raise
    return ChatServer(server, store, bus, components, config.shutdown_grace_s)
