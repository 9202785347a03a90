"""Helpers for notify_service tests: a recording push provider (standing in for APNs, FCM, Web
Push and webhooks only) and a harness of real chat_service, presence_service and notify_service
servers on one bus."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.notify.v1 import notify_service_pb2 as pb
from chatmesh.notify.v1 import notify_service_pb2_grpc
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chat_service.config import ChatConfig
from chat_service.server import ChatService, build_chat_service
from chatmesh_common.auth import auth_metadata, issue_service_token
from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock, SystemClock
from chatmesh_common.credentials import SCOPE_NOTIFY_ADMIN
from notify_service.config import NotifyConfig
from notify_service.providers.base import Outcome, Platform, PushMessage, PushResult, PushTarget
from notify_service.server import NotifyService, build_notify_service
from presence_service.config import PresenceConfig
from presence_service.server import PresenceService, build_presence_service
from tests.chat.support import SECRET, SERVICE_SECRET, Client

WAIT_S = 5.0


@dataclass(frozen=True)
class Sent:
    target: PushTarget
    message: PushMessage

    @property
    def key(self) -> tuple[str, str, str, str]:
        data = self.message.data
        return (self.target.token, data.get("type", ""), data.get("conversation_id", ""),
                data.get("seq") or data.get("last_read_seq", ""))  # fmt: skip


@dataclass
class RecordingProvider:
    """A PushProvider that records what it accepts; `script[token]` gives the results of that
    token's next calls (then SENT)."""

    platform: Platform = Platform.APNS
    sent: list[Sent] = field(default_factory=list)
    calls: list[tuple[PushTarget, float]] = field(default_factory=list)
    # The message of every call, in call order (retries included).
    tried: list[tuple[PushTarget, PushMessage]] = field(default_factory=list)
    script: dict[str, deque[PushResult]] = field(default_factory=dict)
    delay_s: float = 0.0
    # Tokens whose calls hang this long, as an endpoint that never answers until the timeout.
    hang: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def fail(self, token: str, *results: PushResult) -> None:
        self.script.setdefault(token, deque()).extend(results)

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        loop = asyncio.get_running_loop()
        self.calls.append((target, loop.time()))
        self.tried.append((target, message))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if target.token in self.hang:
            await asyncio.sleep(self.hang[target.token])
        queue = self.script.get(target.token)
        result = queue.popleft() if queue else PushResult(Outcome.SENT, status=200)
        if result.outcome is Outcome.SENT:
            self.sent.append(Sent(target, message))
        self.changed.set()
        return result

    async def close(self) -> None:
        pass

    def to(self, token: str, kind: str = "message") -> list[PushMessage]:
        return [
            s.message
            for s in self.sent
            if s.target.token == token and s.message.data.get("type") == kind
        ]

    async def wait_for(
        self, token: str, count: int = 1, kind: str = "message"
    ) -> list[PushMessage]:
        async with asyncio.timeout(WAIT_S):
            while len(self.to(token, kind)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.to(token, kind)


def apns(token: str) -> pb.PushTarget:
    return pb.PushTarget(platform=pb.PLATFORM_APNS, token=token)


@dataclass
class Harness:
    bus: Bus
    chat: ChatService
    presence: PresenceService
    notify: NotifyService
    provider: RecordingProvider
    channel: grpc.aio.Channel
    notify_channel: grpc.aio.Channel
    presence_channel: grpc.aio.Channel

    def client(self, user_id: str, device_id: str = "default") -> Client:
        return Client(self, user_id, device_id)

    @property
    def stub(self) -> Any:
        return notify_service_pb2_grpc.NotifyServiceStub(self.notify_channel)

    @property
    def admin_md(self) -> tuple[tuple[str, str], ...]:
        return auth_metadata(issue_service_token(SERVICE_SECRET, "operator", [SCOPE_NOTIFY_ADMIN]))

    async def register(self, who: Client, token: str) -> pb.Device:
        response = await self.stub.RegisterDevice(
            pb.RegisterDeviceRequest(target=apns(token)), metadata=who.md
        )
        device: pb.Device = response.device
        return device

    async def online(self, who: Client) -> None:
        stub: Any = presence_service_pb2_grpc.PresenceServiceStub(self.presence_channel)
        await stub.Connect(presence_pb.ConnectRequest(connection_id="c1"), metadata=who.md)

    async def offline(self, who: Client) -> None:
        stub: Any = presence_service_pb2_grpc.PresenceServiceStub(self.presence_channel)
        await stub.Disconnect(presence_pb.DisconnectRequest(connection_id="c1"), metadata=who.md)

    async def settle(self, quiet_s: float = 0.3) -> None:
        """Waits until the provider has seen no call for `quiet_s`."""
        async with asyncio.timeout(WAIT_S):
            while True:
                self.provider.changed.clear()
                try:
                    await asyncio.wait_for(self.provider.changed.wait(), quiet_s)
                except TimeoutError:
                    return

    async def send(self, who: Client, conversation_id: str, body: str,
                   mentions: Iterable[str] = ()) -> chat_pb.SendMessageResponse:  # fmt: skip
        response: chat_pb.SendMessageResponse = await who.chat.SendMessage(
            chat_pb.SendMessageRequest(
                conversation_id=conversation_id,
                client_msg_id=uuid.uuid4().hex,
                body=body,
                mentions=list(mentions),
            ),
            metadata=who.md,
        )
        return response


def notify_config(tmp_path: Path, chat_port: int, presence_port: int, **kw: Any) -> NotifyConfig:
    settings: dict[str, Any] = {
        "device_interval_s": 0.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "max_attempts": 3,
        **kw,
    }
    return NotifyConfig(
        jwt_secret=SECRET,
        service_secret=SERVICE_SECRET,
        grpc_bind="127.0.0.1:0",
        store_path=str(tmp_path / "notify.db"),
        chat_target=f"127.0.0.1:{chat_port}",
        presence_target=f"127.0.0.1:{presence_port}",
        shutdown_grace_s=0.2,
        drain_s=0,
        **settings,
    )


def notify_config_from_env(
    env: Mapping[str, str], chat_port: int, presence_port: int
) -> NotifyConfig:
    """notify_service's config as `chatmesh serve notify` reads it from `env` (plus the secrets,
    the other services' addresses and test-sized timings)."""
    return NotifyConfig.from_env(
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
            "CHATMESH_GRPC_BIND": "127.0.0.1:0",
            "CHATMESH_CHAT_TARGET": f"127.0.0.1:{chat_port}",
            "CHATMESH_PRESENCE_TARGET": f"127.0.0.1:{presence_port}",
            "CHATMESH_NOTIFY_DEVICE_INTERVAL_S": "0",
            "CHATMESH_NOTIFY_BACKOFF_BASE_S": "0.05",
            "CHATMESH_NOTIFY_BACKOFF_MAX_S": "0.2",
            "CHATMESH_NOTIFY_MAX_ATTEMPTS": "3",
            "CHATMESH_SHUTDOWN_GRACE_S": "0.2",
            "CHATMESH_DRAIN_S": "0",
            "CHATMESH_METRICS_PORT": "-1",
            **env,
        }
    )


async def start_harness(
    tmp_path: Path,
    clock: Clock | None = None,
    bus: Bus | None = None,
    configured_providers: bool = False,
    notify_env: Mapping[str, str] | None = None,
    **notify_settings: Any,
) -> AsyncIterator[Harness]:
    """The three servers on `bus` (a fresh in-process bus by default). notify_service pushes
    through the recording provider, or with `configured_providers` through the providers its
    config's credentials build. With `notify_env`, notify_service is configured from that
    environment instead (notify_config_from_env) and builds its own bus and store from it."""
    bus = bus or InProcessBus()
    clock = clock or SystemClock()
    chat = build_chat_service(
        ChatConfig(jwt_secret=SECRET, service_secret=SERVICE_SECRET, data_dir=str(tmp_path),
                   grpc_bind="127.0.0.1:0", shutdown_grace_s=0.1, drain_s=0),
        bus=bus, clock=clock,
    )  # fmt: skip
    await chat.start()
    presence = build_presence_service(
        PresenceConfig(jwt_secret=SECRET, service_secret=SERVICE_SECRET, grpc_bind="127.0.0.1:0",
                       chat_target=f"127.0.0.1:{chat.port}", shutdown_grace_s=0.1, drain_s=0),
        bus=bus, clock=clock,
    )  # fmt: skip
    await presence.start()
    provider = RecordingProvider()
    if notify_env is None:
        config = notify_config(tmp_path, chat.port, presence.port, **notify_settings)
    else:
        config = notify_config_from_env(notify_env, chat.port, presence.port)
    notify = build_notify_service(
        config,
        providers=None if configured_providers else {Platform.APNS: provider},
        bus=bus if notify_env is None else None,
        clock=clock,
    )
    await notify.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
    notify_channel = grpc.aio.insecure_channel(f"127.0.0.1:{notify.port}")
    presence_channel = grpc.aio.insecure_channel(f"127.0.0.1:{presence.port}")
    try:
        yield Harness(bus, chat, presence, notify, provider, channel, notify_channel,
                      presence_channel)  # fmt: skip
    finally:
        for c in (channel, notify_channel, presence_channel):
            await c.close(None)
        await notify.stop()
        await presence.stop()
        await chat.stop()
