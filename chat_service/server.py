"""Builds chat_service from its config and dependencies, in one place, and serves it over gRPC.

`build_chat_service(config, store=..., bus=..., clock=...)` is the one way to make a chat_service:
`chatmesh serve chat`, `python -m chat_service`, `chatmesh dev` (which hosts its component next to
presence's on one gRPC server), tests and bench all call it. A store or bus passed in belongs to
the caller (opened and closed by it); what the service builds from the config it also closes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from chatmesh.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import Registration
from chatmesh_common.limits import LIMITS
from chatmesh_common.rpc import Authenticator
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService
from chatmesh_common.tls import open_channel

from .access import ACCESS_SERVICE_NAME, access_registration
from .attachments import Attachments, GrpcAttachments, chat_credential
from .chat import Chat
from .config import ChatConfig
from .events import EventSink
from .fanout import Fanout
from .moderation import Moderation
from .moderation_servicer import SERVICE_NAME as MODERATION_SERVICE_NAME
from .moderation_servicer import moderation_registration
from .relay import Relay
from .retention import RetentionSweeper, retention_periods
from .screening import Blocklist
from .servicer import ChatServicer, EventServicer
from .store.base import ChatStore
from .store.sqlite import SqliteChatStore

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    ACCESS_SERVICE_NAME,
    MODERATION_SERVICE_NAME,
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


@dataclass(frozen=True)
class ChatParts:
    """What a running chat_service is made of (tests reach into it, e.g. the sweeper)."""

    store: ChatStore
    bus: Bus
    chat: Chat
    relay: Relay
    sweeper: RetentionSweeper
    moderation: Moderation


def build_authenticator(config: ChatConfig, clock: Clock) -> Authenticator:
    """User tokens for the user RPCs; service tokens (when a service secret is set) for
    AccessService, which refuses every caller without one."""
    if not config.service_secret:
        log.warning("no CHATMESH_SERVICE_SECRET: AccessService refuses every call")
    return Authenticator.for_config(config, clock.now)


class ChatComponent:
    """chat_service's servicers and background work (relay, retention) on a gRPC server."""

    service_names: Sequence[str] = SERVICE_NAMES

    def __init__(
        self,
        config: ChatConfig,
        *,
        store: ChatStore | None,
        bus: Bus | None,
        clock: Clock,
        attachments: Attachments | None = None,
    ) -> None:
        self.config = config
        self._attachments = attachments
        self._media_channel: grpc.aio.Channel | None = None
        self.clock = clock
        self._given_store = store
        self._given_bus = bus
        self._store = store
        self._bus = bus
        self._parts: ChatParts | None = None
        self._sink: EventSink | None = None

    @property
    def parts(self) -> ChatParts:
        assert self._parts is not None, "chat_service is not running"
        return self._parts

    async def open(self) -> list[Registration]:
        config = self.config
        if self._store is None:
            store = build_store(config)
            await store.open()
            self._store = store
        if self._bus is None:
            self._bus = await build_bus(config)
        store, bus = self._store, self._bus
        authenticator = build_authenticator(config, self.clock)
        limits = replace(
            LIMITS,
            max_body_bytes=config.max_body_bytes,
            max_group_members=config.max_group_members,
            default_page=config.default_page,
            max_page=config.max_page,
            conversations_per_hour=config.conversations_per_hour,
            conversation_burst=config.conversation_burst,
            invites_per_hour=config.invites_per_hour,
            invite_burst=config.invite_burst,
        )
        fanout = Fanout(bus, store, config.fanout_read_threshold)
        relay = Relay(store, bus, fanout, sweep_interval_s=config.relay_sweep_s)
        self._sink = sink = EventSink(fanout, relay)
        attachments = self._attachments
        if attachments is None and config.media_target:
            self._media_channel = open_channel(config.media_target, config.tls)
            attachments = GrpcAttachments(
                chat_credential(config.service_secret), self._media_channel
            )
        screen = Blocklist(config.blocked_words, config.blocked_domains, config.held_words)
        chat = Chat(store, sink, limits, clock=self.clock, attachments=attachments, screen=screen)
        moderation = Moderation(chat, bus, config.reports_per_hour)
        sweeper = RetentionSweeper(
            store, retention_periods(config), interval_s=config.retention_sweep_s, clock=self.clock
        )
        self._parts = ChatParts(store, bus, chat, relay, sweeper, moderation)
        # The relay's first sweep publishes whatever an earlier process left; the sweeper is
        # idle when no kind has a retention.
        await relay.start()
        await sweeper.start()
        return [
            (
                chat_service_pb2_grpc.add_ChatServiceServicer_to_server,
                ChatServicer(chat, moderation, authenticator),
            ),
            (
                event_service_pb2_grpc.add_EventServiceServicer_to_server,
                EventServicer(chat, bus, authenticator),
            ),
            access_registration(chat, authenticator),
            moderation_registration(moderation, authenticator),
        ]

    async def before_stop(self) -> None:
        pass

    async def close(self) -> None:
        """Stops the background tasks (after the gRPC server drained), then closes what it built."""
        if self._sink is not None:
            # The live events of the last writes (their acks are sent) go out before the bus closes.
            await self._sink.flush()
        if self._parts is not None:
            await self._parts.sweeper.stop()
            await self._parts.relay.stop()
        if self._media_channel is not None:
            await self._media_channel.close(None)
            self._media_channel = None
        if self._given_bus is None and self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._given_store is None and self._store is not None:
            await self._store.close()
            self._store = None


class ChatService(GrpcService):
    """chat_service on a gRPC server of its own (config.grpc_bind)."""

    def __init__(self, component: ChatComponent) -> None:
        super().__init__("chat_service", [component], component.config)
        self.component = component

    @property
    def parts(self) -> ChatParts:
        return self.component.parts


def build_chat_service(
    config: ChatConfig,
    *,
    store: ChatStore | None = None,
    bus: Bus | None = None,
    attachments: Attachments | None = None,
    clock: Clock,
) -> ChatService:
    """chat_service, not started. Without a store or bus, the config's are built on start;
    attachments are checked with MediaService at config.media_target unless `attachments`."""
    return ChatService(
        ChatComponent(config, store=store, bus=bus, clock=clock, attachments=attachments)
    )


def service_process(clock: Clock) -> Process:
    """chat_service configured from the environment, for the runner (`chatmesh serve chat`)."""
    config = ChatConfig.from_env()
    service = build_chat_service(config, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: f"chat_service gRPC on port {service.port} ({config.store} store)",
    )
