"""Helpers for presence tests: chat_service, AccessService and presence_service on one gRPC server
(as `chatmesh dev` runs them), a manual clock for presence, and per-user clients."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_service_pb2 as ppb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chat_service.config import ChatConfig
from chat_service.server import build_chat_service
from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import Clock, ManualClock, SystemClock
from chatmesh_common.service import GrpcService
from presence_service.access import GrpcAccessClient, presence_credential
from presence_service.backends.base import PresenceBackend
from presence_service.config import PresenceConfig
from presence_service.presence import Presence
from presence_service.server import PresenceService, build_presence_service
from tests.chat.support import SECRET, SERVICE_SECRET, Client, EventReader

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
        self._access_secret = access_secret
        self.data_dir = data_dir
        self.backend = backend
        self._clock = clock or ManualClock(start=1_700_000_000.0)
        self.config = config or PresenceConfig(
            jwt_secret=SECRET, service_secret=SERVICE_SECRET, ttl_s=TTL_S, access_cache_s=0.0
        )
        self.server: GrpcService | None = None
        self._presence: PresenceService | None = None
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

    @property
    def presence(self) -> Presence:
        assert self._presence is not None, "the server is not running"
        return self._presence.presence

    async def start(self) -> None:
        """Both services' builders, their components on one gRPC server (as `chatmesh dev`)."""
        chat_config = ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(self.data_dir),
            grpc_bind="127.0.0.1:0",
            shutdown_grace_s=0.5,
            drain_s=0,
        )
        chat = build_chat_service(chat_config, bus=self.bus, clock=SystemClock())
        access = GrpcAccessClient(presence_credential(self._access_secret))
        self._presence = presence = build_presence_service(
            self.config, backend=self.backend, bus=self.bus, access=access, clock=self._clock
        )
        self.server = GrpcService(
            "presence tests", [*chat.components, *presence.components], chat_config
        )
        await self.server.start()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.server.port}")
        access.set_channel(self._channel)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self._channel is not None:
            await self._channel.close(None)
        await self.backend.close()

    def client(self, name: str, device_id: str = "default") -> PresenceClient:
        return PresenceClient(self, name, device_id)

    async def sweep(self) -> int:
        return await self.presence.sweep_once()
