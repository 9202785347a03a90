"""Builds presence_service's dependencies in one place and serves them over gRPC."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from chatmesh.presence.v1 import presence_service_pb2, presence_service_pb2_grpc
from grpc.aio import Channel

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import GrpcServer, Registration, start_grpc_server
from chatmesh_common.rpc import Authenticator

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


def build_presence(
    config: PresenceConfig,
    backend: PresenceBackend,
    bus: Bus,
    access: AccessClient,
    clock: Clock | None = None,
) -> Presence:
    return Presence(backend, bus, access, config.settings, clock)


def build_registrations(config: PresenceConfig, presence: Presence) -> list[Registration]:
    """The servicer of presence_service, for a server of its own or one shared with others."""
    return [
        (
            presence_service_pb2_grpc.add_PresenceServiceServicer_to_server,
            PresenceServicer(
                presence, Authenticator.from_secrets(config.jwt_secret, config.service_secret)
            ),
        )
    ]


@dataclass
class PresenceServer:
    grpc: GrpcServer
    presence: Presence
    backend: PresenceBackend
    bus: Bus
    channel: Channel | None
    grace_s: float
    # A bus passed in belongs to the caller (e.g. shared with chat_service); ours we close.
    owns_bus: bool = False

    @property
    def port(self) -> int:
        return self.grpc.port

    async def stop(self) -> None:
        # Watch streams never end on their own: end them first so the drain does not wait.
        await self.presence.stop()
        await self.grpc.stop(self.grace_s)
        if self.channel is not None:
            await self.channel.close(None)
        if self.owns_bus:
            await self.bus.close()
        await self.backend.close()


async def _build_bus(config: PresenceConfig) -> Bus:
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        return await NatsBus.connect(config.nats)
    log.warning(
        "presence_service on a private in-process bus: typing reaches no event stream and"
        " presence stays in this process; set CHATMESH_BUS=nats to share chat_service's bus"
    )
    return InProcessBus()


async def start_presence_server(
    config: PresenceConfig,
    bus: Bus | None = None,
    access: AccessClient | None = None,
    clock: Clock | None = None,
    backend: PresenceBackend | None = None,
) -> PresenceServer:
    """presence_service on config.grpc_bind; AccessService at config.chat_target unless given.

    The bus carries presence changes between replicas, and typing to chat_service's event
    streams (`chatmesh.user.<user>`): it must be the bus chat_service uses. Without one, the
    config's bus is built (`CHATMESH_BUS=nats` in a cluster); a fresh in-process bus serves
    presence in a single process, but its typing signals reach no event stream.
    """
    backend = backend or build_backend(config)
    await backend.open()
    channel = None
    if access is None:
        channel = grpc.aio.insecure_channel(config.chat_target)
        access = GrpcAccessClient(presence_credential(config.service_secret), channel)
    owns_bus = bus is None
    if bus is None:
        bus = await _build_bus(config)
    presence = build_presence(config, backend, bus, access, clock)
    server = await start_grpc_server(
        config.grpc_bind, build_registrations(config, presence), SERVICE_NAMES
    )
    presence.start()
    return PresenceServer(
        server, presence, backend, bus, channel, config.shutdown_grace_s, owns_bus
    )
