"""Helpers for presence tests: chat_service, AccessService and presence_service on one gRPC server
(as `chatmesh dev` runs them), a manual clock for presence, and per-user clients."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
from chat.support import SECRET, SERVICE_SECRET, Client, EventReader
from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_service_pb2 as ppb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chat_service.config import ChatConfig
from chat_service.relay import Relay
from chat_service.server import SERVICE_NAMES as CHAT_SERVICE_NAMES
from chat_service.server import build_components, build_store
from chat_service.store.base import ChatStore
from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import Clock, ManualClock
from chatmesh_common.grpc_server import GrpcServer, start_grpc_server
from presence_service.access import GrpcAccessClient, presence_credential
from presence_service.backends.base import PresenceBackend
from presence_service.config import PresenceConfig
from presence_service.presence import Presence
from presence_service.server import SERVICE_NAMES as PRESENCE_SERVICE_NAMES
from presence_service.server import build_presence
from presence_service.server import build_registrations as presence_registrations

EVENT_TIMEOUT_S = 5.0
TTL_S = 30.0


class PresenceClient(Client):
    """A chat client that also speaks PresenceService, with one connection id per client."""

    def __init__(self, harness: PresenceHarness, user_id: str, device_id: str) -> None:
        super().__init__(harness, user_id, device_id)
        self.connection_id = uuid.uuid4().hex[:12]

    @property
    def presence(self) -> Any:
        return presence_service_pb2_grpc.PresenceServiceStub(self._harness.channel)

    async def connect(self) -> ppb.ConnectResponse:
        response: ppb.ConnectResponse = await self.presence.Connect(
            ppb.ConnectRequest(connection_id=self.connection_id), metadata=self.md
        )
        return response

    async def heartbeat(self, known_status: int = 0) -> ppb.HeartbeatResponse:
        response: ppb.HeartbeatResponse = await self.presence.Heartbeat(
            ppb.HeartbeatRequest(connection_id=self.connection_id, known_status=known_status),  # type: ignore[arg-type]
            metadata=self.md,
        )
        return response

    async def disconnect(self) -> None:
        await self.presence.Disconnect(
            ppb.DisconnectRequest(connection_id=self.connection_id), metadata=self.md
        )

    async def set_status(self, status: int, text: str = "") -> ppb.UserPresence:
        response: ppb.SetStatusResponse = await self.presence.SetStatus(
            ppb.SetStatusRequest(status=status, custom_text=text),  # type: ignore[arg-type]
            metadata=self.md,
        )
        return response.presence

    async def get(self, *users: Client) -> list[ppb.UserPresence]:
        response: ppb.GetPresenceResponse = await self.presence.GetPresence(
            ppb.GetPresenceRequest(user_ids=[u.user_id for u in users]), metadata=self.md
        )
        return list(response.presences)

    async def state_of(self, user: Client) -> ppb.UserPresence:
        (presence,) = await self.get(user)
        return presence

    async def typing(self, conversation_id: str, typing: bool = True) -> ppb.SendTypingResponse:
        response: ppb.SendTypingResponse = await self.presence.SendTyping(
            ppb.SendTypingRequest(conversation_id=conversation_id, typing=typing),
            metadata=self.md,
        )
        return response

    async def watch(self, *users: Client) -> Watcher:
        """Opens a Watch stream and reads its snapshot (one presence per user)."""
        watcher = Watcher(self, [u.user_id for u in users])
        for _ in users:
            presence = (await watcher.next()).presence
            watcher.snapshot[presence.user_id] = presence
        return watcher


class Watcher:
    def __init__(self, client: PresenceClient, user_ids: list[str]) -> None:
        self.call: Any = client.presence.Watch(
            ppb.WatchRequest(user_ids=user_ids), metadata=client.md
        )
        self.snapshot: dict[str, ppb.UserPresence] = {}

    async def next(self, wait_s: float = EVENT_TIMEOUT_S) -> ppb.WatchResponse:
        async with asyncio.timeout(wait_s):
            item = await self.call.read()
        assert item is not grpc.aio.EOF, "the watch stream ended"  # type: ignore[attr-defined]
        assert isinstance(item, ppb.WatchResponse)
        return item

    async def next_presence(self) -> ppb.UserPresence:
        item = await self.next()
        assert item.HasField("presence"), f"expected presence, got {item}"
        return item.presence

    def close(self) -> None:
        self.call.cancel()


async def next_typing(reader: EventReader) -> events_pb2.ConversationEvent:
    """The next item of an event stream, which must be a typing signal (seq 0)."""
    event = await reader.next_event()
    assert event.HasField("typing_changed"), f"expected typing, got {event}"
    assert event.seq == 0
    return event


class PresenceHarness:
    """The chat and presence services on one free port; presence runs on a manual clock."""

    def __init__(
        self,
        data_dir: Path,
        backend: PresenceBackend,
        clock: Clock | None = None,
        config: PresenceConfig | None = None,
        access_secret: str = SERVICE_SECRET,
    ) -> None:
        """`access_secret` signs presence's AccessService calls (chat_service verifies them
        with SERVICE_SECRET)."""
        self.data_dir = data_dir
        self._access_secret = access_secret
        self.backend = backend
        self._clock = clock or ManualClock(start=1_700_000_000.0)
        self.config = config or PresenceConfig(
            jwt_secret=SECRET, service_secret=SERVICE_SECRET, ttl_s=TTL_S, access_cache_s=0.0
        )
        self.server: GrpcServer | None = None
        self.presence: Presence | None = None
        self._store: ChatStore | None = None
        self._relay: Relay | None = None
        self._channel: grpc.aio.Channel | None = None
        self._watchers: list[Watcher] = []
        self.bus = InProcessBus()

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self._clock, ManualClock), "this harness runs on the system clock"
        return self._clock

    @property
    def channel(self) -> grpc.aio.Channel:
        assert self._channel is not None, "the server is not running"
        return self._channel

    async def start(self) -> None:
        chat_config = ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(self.data_dir),
            grpc_bind="127.0.0.1:0",
        )
        self._store = store = build_store(chat_config)
        await store.open()
        bus = self.bus
        access = GrpcAccessClient(presence_credential(self._access_secret))
        self.presence = build_presence(self.config, self.backend, bus, access, self._clock)
        components = build_components(chat_config, store, bus)
        self._relay = components.relay
        await components.relay.start()
        self.server = await start_grpc_server(
            chat_config.grpc_bind,
            [*components.registrations, *presence_registrations(self.config, self.presence)],
            [*CHAT_SERVICE_NAMES, *PRESENCE_SERVICE_NAMES],
        )
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        access.set_channel(self._channel)

    async def stop(self) -> None:
        if self.presence is not None:
            await self.presence.stop()
        if self.server is not None:
            await self.server.stop(0.5)
        if self._channel is not None:
            await self._channel.close(None)
        if self._relay is not None:
            await self._relay.stop()
        if self._store is not None:
            await self._store.close()
        await self.backend.close()

    def client(self, name: str, device_id: str = "default") -> PresenceClient:
        return PresenceClient(self, name, device_id)

    async def sweep(self) -> int:
        assert self.presence is not None
        return await self.presence.sweep_once()
