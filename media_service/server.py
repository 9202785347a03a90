"""Builds media_service from its config and dependencies and serves it over gRPC.

`build_media_service(config, store=..., blobs=..., bus=..., access=..., clock=...)` is the one way
to make a media_service. What is passed in belongs to the caller; what the service builds from
the config it also closes. With the fs blob store, media_service also serves that store's signed
URLs over HTTP (config.http_bind). The bus must be the one chat_service writes its durable log
to: the binder follows it to learn which messages attach which media.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import grpc
from chatmesh.media.v1 import media_service_pb2_grpc

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.bus.event_consumer import EventConsumer
from chatmesh_common.clock import Clock
from chatmesh_common.grpc_server import Registration
from chatmesh_common.rpc import Authenticator
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService
from chatmesh_common.settings import BindError
from chatmesh_common.tls import open_channel

from .access import GrpcMediaAccess, media_credential
from .binder import Binder
from .blobs.base import BlobStore
from .blobs.fs import FsBlobStore
from .blobs.fs_http import FsBlobHttpServer
from .config import MediaConfig
from .media import Media, MediaAccess, MediaRules
from .processing.base import Scanner
from .processing.scan import ChainScanner, ClamdScanner, EicarScanner
from .servicer import SERVICE_NAME, MediaServicer
from .store.base import MediaStore
from .store.sqlite import SqliteMediaStore
from .sweeper import MediaSweeper, SweepPolicy

log = logging.getLogger(__name__)

SERVICE_NAMES = (SERVICE_NAME,)
DAY_S = 86400.0
# chat's ConversationKind numbers (types.proto), for the retention settings.
DIRECT, GROUP, CHANNEL = 1, 2, 3


def build_store(config: MediaConfig) -> MediaStore:
    if config.records_store == "scylla":
        from .store.cql import CqlMediaStore

        cql = config.scylla
        if cql is None:
            raise ValueError("records store 'scylla' needs its settings")
        # Media's own migrations are claimed with an LWT: safe from every replica at start-up.
        return CqlMediaStore(
            list(cql.contact_points),
            port=cql.port,
            local_dc=cql.local_dc,
            keyspace=cql.keyspace,
            replication=cql.replication,
            consistency=cql.consistency,
            request_timeout=cql.request_timeout_s,
            migrate_on_open=True,
            cluster_options=cql.cluster_options(),
        )
    return SqliteMediaStore(config.records)


def url_secret(config: MediaConfig) -> bytes:
    if config.url_secret:
        return config.url_secret.encode()
    # One secret fewer to configure: a key of its own, derived so it never equals the other.
    return hmac.new(config.service_secret.encode(), b"chatmesh media urls", hashlib.sha256).digest()


def build_scanner(config: MediaConfig) -> Scanner:
    scanners: list[Scanner] = [EicarScanner()]
    if config.clamd:
        host, _, port = config.clamd.rpartition(":")
        scanners.append(ClamdScanner(host or "127.0.0.1", int(port)))
    return ChainScanner(scanners)


def rules(config: MediaConfig) -> MediaRules:
    return MediaRules(
        max_object_bytes=config.max_object_bytes,
        allow_list=config.allowed_types,
        upload_url_s=config.upload_url_s,
        download_url_s=config.download_url_s,
        uploads_per_minute=config.uploads_per_minute,
        quota_bytes_per_day=config.quota_bytes_per_day,
    )


def sweep_policy(config: MediaConfig) -> SweepPolicy:
    days = {
        DIRECT: config.retention_direct_days,
        GROUP: config.retention_group_days,
        CHANNEL: config.retention_channel_days,
    }
    return SweepPolicy(
        pending_expiry_s=config.pending_expiry_s,
        deleted_grace_s=config.deleted_grace_s,
        retention_s={kind: d * DAY_S for kind, d in days.items() if d > 0},
    )


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _build_bus(config: MediaConfig) -> Bus:
    if config.bus == "nats":
        from chatmesh_common.bus.nats import NatsBus

        return await NatsBus.connect(config.nats)
    log.warning("media_service on a private in-process bus: it sees no message of chat_service")
    return InProcessBus()


class MediaComponent:
    """media_service's servicer, its binder and sweeper, and the fs store's URL server."""

    service_names: Sequence[str] = SERVICE_NAMES

    def __init__(
        self,
        config: MediaConfig,
        *,
        store: MediaStore | None,
        blobs: BlobStore | None,
        bus: Bus | None,
        access: MediaAccess | None,
        clock: Clock,
    ) -> None:
        self.config = config
        self.clock = clock
        self._given = {"store": store, "blobs": blobs, "bus": bus}
        self.store = store
        self.blobs = blobs
        self._bus = bus
        self._access = access
        self._channel: grpc.aio.Channel | None = None
        self._http: FsHttp | None = None
        self._consumer: EventConsumer | None = None
        self.sweeper: MediaSweeper | None = None
        self.media: Media | None = None

    async def _open_blobs(self) -> BlobStore:
        config = self.config
        if config.blobs == "s3":
            from .blobs.s3 import S3BlobStore

            s3 = S3BlobStore(
                endpoint_url=config.s3_endpoint,
                region=config.s3_region,
                bucket=config.s3_bucket,
                access_key_id=config.s3_access_key,
                secret_access_key=config.s3_secret_key,
            )
            await s3.open()
            return s3
        self._http = FsHttp(config, url_secret(config), self.clock)
        return await self._http.open()

    async def open(self) -> list[Registration]:
        config = self.config
        if self.store is None:
            self.store = build_store(config)
            await self.store.open()
        if self.blobs is None:
            self.blobs = await self._open_blobs()
        if self._bus is None:
            self._bus = await _build_bus(config)
        access = self._access
        if access is None:
            self._channel = open_channel(config.chat_target, config.tls)
            access = GrpcMediaAccess(media_credential(config.service_secret), self._channel)
        self.media = Media(
            self.store, self.blobs, access, build_scanner(config), self.clock, rules(config)
        )
        self._consumer = Binder(self.store, self.clock).consumer(self._bus)
        self._consumer.start()
        self.sweeper = MediaSweeper(self.store, self.blobs, self.clock, sweep_policy(config))
        self.sweeper.start(config.sweep_s)
        authenticator = Authenticator.for_config(config, self.clock.now)
        return [
            (
                media_service_pb2_grpc.add_MediaServiceServicer_to_server,
                MediaServicer(self.media, authenticator),
            )
        ]

    def allow_origins(self, origins: Collection[str]) -> None:
        """Browser origins whose pages may upload to and download from the fs store's URLs
        (with S3, the bucket's own CORS rules decide)."""
        if self._http is not None:
            self._http.allow_origins(origins)

    @property
    def http_port(self) -> int | None:
        """The fs store's URL server port (None with S3)."""
        return None if self._http is None else self._http.port

    async def before_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self.sweeper is not None:
            await self.sweeper.stop()

    async def close(self) -> None:
        await self.before_stop()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        if self._given["bus"] is None and self._bus is not None:
            await self._bus.close()
            self._bus = None
        if self._given["blobs"] is None and self.blobs is not None:
            await self.blobs.close()
            self.blobs = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._given["store"] is None and self.store is not None:
            await self.store.close()
            self.store = None


class FsHttp:
    """The embedded blob store and the HTTP server of its signed URLs, opened together: the
    store's URLs need the server's address, known once it is bound (port 0 in tests)."""

    def __init__(self, config: MediaConfig, secret: bytes, clock: Clock) -> None:
        self._config = config
        self._secret = secret
        self._clock = clock
        self._server: FsBlobHttpServer | None = None
        self.port: int | None = None

    async def open(self) -> BlobStore:
        config = self._config
        host, port = _split_bind(config.http_bind)
        store = FsBlobStore(
            Path(config.blob_dir), self._secret, config.public_url or "http://pending", self._clock
        )
        await store.open()
        origins = [o.strip() for o in config.cors_origins.split(",") if o.strip()]
        self._server = FsBlobHttpServer(store, host, port, cors_origins=origins)
        try:
            await self._server.start()
        except OSError as exc:
            raise BindError(
                config.http_bind, "CHATMESH_MEDIA_HTTP_BIND", exc.strerror or str(exc)
            ) from exc
        self.port = self._server.port
        if not config.public_url:
            store.base_url = f"http://{host}:{self.port}"
        return store

    def allow_origins(self, origins: Collection[str]) -> None:
        if self._server is not None:
            self._server.cors_origins.update(origins)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


class MediaService(GrpcService):
    """media_service on a gRPC server of its own (config.grpc_bind)."""

    def __init__(self, component: MediaComponent) -> None:
        super().__init__("media_service", [component], component.config)
        self.component = component


def build_media_service(
    config: MediaConfig,
    *,
    store: MediaStore | None = None,
    blobs: BlobStore | None = None,
    bus: Bus | None = None,
    access: MediaAccess | None = None,
    clock: Clock,
) -> MediaService:
    """media_service, not started; AccessService at config.chat_target unless `access`."""
    component = MediaComponent(
        config, store=store, blobs=blobs, bus=bus, access=access, clock=clock
    )
    return MediaService(component)


def service_process(clock: Clock) -> Process:
    """media_service configured from the environment, for the runner."""
    config = MediaConfig.from_env()
    service = build_media_service(config, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: (
            f"media_service gRPC on port {service.port} ({config.blobs} blob store"
            + (
                f", URLs on port {service.component.http_port})"
                if service.component.http_port
                else ")"
            )
        ),
    )
