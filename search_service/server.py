"""Builds search_service from its config and dependencies and serves it over gRPC.

`build_search_service(config, engine=..., bus=..., access=..., clock=...)` is the one way to make
a search_service. A bus or engine passed in belongs to the caller; what the service builds from
the config it also closes. The bus must be the one chat_service writes its durable log to.
With `consume=False` it serves SearchService only: another process indexes into the same engine
(`chatmesh dev`'s consumer worker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from chatmesh.search.v1 import search_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import Registration
from chatmesh_common.rpc import Authenticator
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService
from chatmesh_common.tls import open_channel

from .access import GrpcSearchAccess, search_credential
from .config import SearchConfig
from .engines.base import SearchEngine
from .engines.fts5 import Fts5Engine
from .engines.solr import SolrEngine
from .indexer import Indexer
from .search import Search, SearchAccess
from .servicer import SERVICE_NAME, SearchServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (SERVICE_NAME,)


def build_engine(config: SearchConfig) -> SearchEngine:
    if config.engine == "fts5":
        return Fts5Engine(config.index_path)
    if config.engine == "solr":
        return SolrEngine(
            config.solr_url,
            config.solr_collection,
            configset=config.solr_configset,
            shards=config.solr_shards,
            replicas=config.solr_replicas,
        )
    raise ValueError(f"unknown search engine {config.engine!r}")


async def _build_bus(config: SearchConfig) -> Bus:
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        return await NatsBus.connect(config.nats)
    log.warning("search_service on a private in-process bus: it indexes nothing of chat_service")
    return InProcessBus()


class SearchComponent:
    """search_service's servicer and its indexer on a gRPC server."""

    service_names: Sequence[str] = SERVICE_NAMES

    def __init__(
        self,
        config: SearchConfig,
        *,
        engine: SearchEngine | None,
        bus: Bus | None,
        access: SearchAccess | None,
        clock: Clock,
        consume: bool = True,
    ) -> None:
        self.config = config
        self.clock = clock
        self._consume = consume
        self._given_engine = engine
        self._given_bus = bus
        self._engine = engine
        self._bus = bus
        self._access = access
        self._channel: grpc.aio.Channel | None = None
        self._indexer: Indexer | None = None

    @property
    def indexer(self) -> Indexer:
        assert self._indexer is not None, "search_service is not running"
        return self._indexer

    async def open(self) -> list[Registration]:
        config = self.config
        if self._engine is None:
            self._engine = build_engine(config)
            await self._engine.open()
        if self._consume and self._bus is None:
            self._bus = await _build_bus(config)
        access = self._access
        if access is None:
            self._channel = open_channel(config.chat_target, config.tls)
            access = GrpcSearchAccess(search_credential(config.service_secret), self._channel)
        if self._bus is not None and self._consume:
            self._indexer = Indexer(self._bus, self._engine, self.clock, lanes=config.index_lanes)
            self._indexer.start()
        authenticator = Authenticator.for_config(config, self.clock.now)
        return [
            (
                search_service_pb2_grpc.add_SearchServiceServicer_to_server,
                SearchServicer(Search(self._engine, access), authenticator),
            )
        ]

    async def before_stop(self) -> None:
        if self._indexer is not None:
            await self._indexer.stop()

    async def close(self) -> None:
        if self._indexer is not None:
            await self._indexer.stop()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        if self._given_bus is None and self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._given_engine is None and self._engine is not None:
            await self._engine.close()
            self._engine = None


class SearchService(GrpcService):
    """search_service on a gRPC server of its own (config.grpc_bind)."""

    def __init__(self, component: SearchComponent) -> None:
        super().__init__("search_service", [component], component.config)
        self.component = component

    @property
    def indexer(self) -> Indexer:
        return self.component.indexer


def build_search_service(
    config: SearchConfig,
    *,
    engine: SearchEngine | None = None,
    bus: Bus | None = None,
    access: SearchAccess | None = None,
    clock: Clock,
    consume: bool = True,
) -> SearchService:
    """search_service, not started; AccessService at config.chat_target unless `access`."""
    component = SearchComponent(
        config, engine=engine, bus=bus, access=access, clock=clock, consume=consume
    )
    return SearchService(component)


def service_process(clock: Clock) -> Process:
    """search_service configured from the environment, for the runner."""
    config = SearchConfig.from_env()
    service = build_search_service(config, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: f"search_service gRPC on port {service.port} ({config.engine})",
    )
