"""Builds notify_service from its config and dependencies and serves it over gRPC.

`build_notify_service(config, providers=..., store=..., bus=..., access=..., clock=...)` is the
one way to make a notify_service. What is passed in belongs to the caller; what the service
builds from the config it also closes. Providers not given are built from `config.providers`
(the credentials that are set). The bus must be the one chat_service writes its durable log to.
With `consume=False` the service serves NotifyService only: another process on the same store
runs the consumer and the delivery loop (`chatmesh dev`'s consumer worker).
With no provider for a platform, pushes to that platform's targets are dead-lettered
("provider not configured").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import grpc
from chatmesh.notify.v1 import notify_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import Registration
from chatmesh_common.rpc import Authenticator
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService
from chatmesh_common.tls import open_channel

from .access import GrpcNotifyAccess, NotifyAccess, notify_credential
from .config import NotifyConfig
from .consumer import PushConsumer
from .delivery import Backoff, Delivery
from .providers.base import Platform, PushProvider
from .providers.settings import build_providers
from .servicer import SERVICE_NAME, NotifyServicer
from .store.base import NotifyStore
from .store.sqlite import SqliteNotifyStore

log = logging.getLogger(__name__)

SERVICE_NAMES = (SERVICE_NAME,)


def build_store(config: NotifyConfig, *, delivers: bool = True) -> NotifyStore:
    """The configured store; `delivers` False: a process that serves the registry only."""
    if config.store == "sqlite":
        return SqliteNotifyStore(config.store_path, recover_inflight=delivers)
    if config.store == "redis":
        # Imported here: redis is a cluster extra, not needed by the embedded default.
        from .store.redis import RedisNotifyStore

        return RedisNotifyStore(config.redis_url, config.redis_prefix, lease_s=config.lease_s)
    raise ValueError(f"unknown notify store {config.store!r}")


async def _build_bus(config: NotifyConfig) -> Bus:
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        return await NatsBus.connect(config.nats)
    log.warning("notify_service on a private in-process bus: it pushes nothing of chat_service")
    return InProcessBus()


class NotifyComponent:
    """notify_service's servicer, its consumer and its delivery loop on a gRPC server."""

    service_names: Sequence[str] = SERVICE_NAMES

    def __init__(
        self,
        config: NotifyConfig,
        *,
        providers: Mapping[Platform, PushProvider] | None,
        store: NotifyStore | None,
        bus: Bus | None,
        access: NotifyAccess | None,
        clock: Clock,
        consume: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock
        self._consume = consume
        self._given_providers = providers
        self.providers: Mapping[Platform, PushProvider] = providers or {}
        self._given_store = store
        self._given_bus = bus
        self._store = store
        self._bus = bus
        self._access = access
        self._channels: list[grpc.aio.Channel] = []
        self._consumer: PushConsumer | None = None
        self._delivery: Delivery | None = None

    @property
    def store(self) -> NotifyStore:
        assert self._store is not None, "notify_service is not running"
        return self._store

    @property
    def consumer(self) -> PushConsumer:
        assert self._consumer is not None, "notify_service is not running"
        return self._consumer

    @property
    def delivery(self) -> Delivery:
        assert self._delivery is not None, "notify_service is not running"
        return self._delivery

    async def open(self) -> list[Registration]:
        config = self.config
        if self._store is None:
            self._store = build_store(config, delivers=self._consume)
            await self._store.open()
        if self._consume:
            await self._start_loops()
        authenticator = Authenticator.for_config(config, self.clock.now)
        return [
            (
                notify_service_pb2_grpc.add_NotifyServiceServicer_to_server,
                NotifyServicer(self._store, authenticator, self.clock),
            )
        ]

    async def _start_loops(self) -> None:
        config = self.config
        assert self._store is not None
        if self._bus is None:
            self._bus = await _build_bus(config)
        if self._given_providers is None:
            self.providers = build_providers(config.providers, self.clock)
            log.info("push providers: %s", ", ".join(sorted(self.providers)) or "none")
        access = self._access
        if access is None:
            chat = open_channel(config.chat_target, config.tls)
            presence = open_channel(config.presence_target, config.tls)
            self._channels = [chat, presence]
            access = GrpcNotifyAccess(notify_credential(config.service_secret), chat, presence)
        wake = asyncio.Event()
        self._delivery = Delivery(
            self._store,
            self.providers,
            self.clock,
            backoff=Backoff(config.backoff_base_s, config.backoff_max_s, config.max_attempts),
            concurrency=config.concurrency,
            slow_after_s=config.slow_after_s,
            wake=wake,
            retention_s=config.retention_s,
        )
        self._consumer = PushConsumer(
            self._bus,
            self._store,
            access,
            self.clock,
            min_interval_s=config.device_interval_s,
            ack_wait_s=config.ack_wait_s,
            lanes=config.consumer_lanes,
            on_queued=wake,
        )
        self._delivery.start()
        self._consumer.start()

    async def _stop_loops(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._delivery is not None:
            await self._delivery.stop(self.config.shutdown_grace_s)

    async def before_stop(self) -> None:
        await self._stop_loops()

    async def close(self) -> None:
        await self._stop_loops()
        for channel in self._channels:
            await channel.close(None)
        self._channels = []
        if self._given_bus is None and self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._given_store is None and self._store is not None:
            await self._store.close()
            self._store = None
        if self._given_providers is None:
            for provider in self.providers.values():
                await provider.close()
            self.providers = {}


class NotifyService(GrpcService):
    """notify_service on a gRPC server of its own (config.grpc_bind)."""

    def __init__(self, component: NotifyComponent) -> None:
        super().__init__("notify_service", [component], component.config)
        self.component = component


def build_notify_service(
    config: NotifyConfig,
    *,
    providers: Mapping[Platform, PushProvider] | None = None,
    store: NotifyStore | None = None,
    bus: Bus | None = None,
    access: NotifyAccess | None = None,
    clock: Clock,
    consume: bool = True,
) -> NotifyService:
    """notify_service, not started; AccessService at config.chat_target and PresenceService at
    config.presence_target unless `access`. A given store must be open already."""
    component = NotifyComponent(
        config,
        providers=providers,
        store=store,
        bus=bus,
        access=access,
        clock=clock,
        consume=consume,
    )
    return NotifyService(component)


def service_process(
    clock: Clock, providers: Mapping[Platform, PushProvider] | None = None
) -> Process:
    """notify_service configured from the environment, for the runner."""
    config = NotifyConfig.from_env()
    service = build_notify_service(config, providers=providers, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: f"notify_service gRPC on port {service.port} ({config.store})",
    )
