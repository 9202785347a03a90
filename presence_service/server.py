"""Builds presence_service from its config and dependencies, in one place, and serves it over gRPC.

`build_presence_service(config, backend=..., bus=..., access=..., clock=...)` is the one way to
make a presence_service (`chatmesh serve presence`, `python -m presence_service`, `chatmesh dev`,
tests and bench). A bus or backend passed in belongs to the caller; what the service builds from
the config it also closes.

The bus carries presence changes between replicas, and typing to chat_service's event streams
(`chatmesh.user.<user>`): it must be the bus chat_service uses. Without one, the config's bus is
built (`CHATMESH_BUS=nats` in a cluster); a fresh in-process bus serves presence in a single
process, but its typing signals reach no event stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from chatmesh.presence.v1 import presence_service_pb2, presence_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import Registration
from chatmesh_common.rpc import Authenticator
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService
from chatmesh_common.tls import open_channel

from .access import AccessClient, GrpcAccessClient, presence_credential
from .backends.base import PresenceBackend
from .backends.memory import MemoryPresenceBackend
from .config import PresenceConfig
from .presence import Presence
from .servicer import PresenceServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (presence_service_pb2.DESCRIPTOR.services_by_name["PresenceService"].full_name,)


def build_backend(config: PresenceConfig) -> PresenceBackend:
    if config.backend == "memory":
        return MemoryPresenceBackend()
    if config.backend == "redis":
        # Imported here: redis is a cluster extra, not needed by the embedded default.
        from .backends.redis import RedisPresenceBackend

        return RedisPresenceBackend(config.redis_url, config.redis_prefix)
    raise ValueError(f"unknown presence backend {config.backend!r}")


async def _build_bus(config: PresenceConfig) -> Bus:
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        return await NatsBus.connect(config.nats)
    log.warning(
        "presence_service on a private in-process bus: typing reaches no event stream and"
        " presence stays in this process; set CHATMESH_BUS=nats to share chat_service's bus"
    )
    return InProcessBus()


class PresenceComponent:
    """presence_service's servicer and its expiry sweep on a gRPC server."""

    service_names: Sequence[str] = SERVICE_NAMES

    def __init__(
        self,
        config: PresenceConfig,
        *,
        backend: PresenceBackend | None,
        bus: Bus | None,
        access: AccessClient | None,
        clock: Clock,
    ) -> None:
        self.config = config
        self.clock = clock
        self._given_backend = backend
        self._given_bus = bus
        self._backend = backend
        self._bus = bus
        self._access = access
        # A channel of our own to AccessService, when no access client was given.
        self._channel: grpc.aio.Channel | None = None
        self._presence: Presence | None = None

    @property
    def presence(self) -> Presence:
        assert self._presence is not None, "presence_service is not running"
        return self._presence

    async def open(self) -> list[Registration]:
        config = self.config
        if self._backend is None:
            self._backend = build_backend(config)
            await self._backend.open()
        if self._bus is None:
            self._bus = await _build_bus(config)
        access = self._access
        if access is None:
            self._channel = open_channel(config.chat_target, config.tls)
            access = GrpcAccessClient(presence_credential(config.service_secret), self._channel)
        self._presence = presence = Presence(
            self._backend, self._bus, access, config.settings, self.clock
        )
        presence.start()
        authenticator = Authenticator.for_config(config, self.clock.now)
        return [
            (
                presence_service_pb2_grpc.add_PresenceServiceServicer_to_server,
                PresenceServicer(presence, authenticator),
            )
        ]

    async def before_stop(self) -> None:
        # Watch streams never end on their own: end them so the grace period does not wait.
        if self._presence is not None:
            await self._presence.stop()

    async def close(self) -> None:
        if self._presence is not None:
            await self._presence.stop()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        if self._given_bus is None and self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._given_backend is None and self._backend is not None:
            await self._backend.close()
            self._backend = None


class PresenceService(GrpcService):
    """presence_service on a gRPC server of its own (config.grpc_bind)."""

    def __init__(self, component: PresenceComponent) -> None:
        super().__init__("presence_service", [component], component.config)
        self.component = component

    @property
    def presence(self) -> Presence:
        return self.component.presence


def build_presence_service(
    config: PresenceConfig,
    *,
    backend: PresenceBackend | None = None,
    bus: Bus | None = None,
    access: AccessClient | None = None,
    clock: Clock,
) -> PresenceService:
    """presence_service, not started; AccessService at config.chat_target unless `access`."""
    component = PresenceComponent(config, backend=backend, bus=bus, access=access, clock=clock)
    return PresenceService(component)


def service_process(clock: Clock) -> Process:
    """presence_service configured from the environment, for the runner."""
    config = PresenceConfig.from_env()
    service = build_presence_service(config, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: f"presence_service gRPC on port {service.port} ({config.backend})",
    )
