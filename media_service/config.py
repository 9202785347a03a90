"""media_service settings, each declared once (chatmesh_common.settings), read from the env."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.bus.nats_settings import NatsSettings, nats_settings_from_env
from chatmesh_common.cql_settings import ScyllaSettings
from chatmesh_common.identity import IssuerSettings
from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import (
    bus_setting,
    drain_setting,
    environ,
    grace_setting,
    jwt_secret_setting,
    leeway_setting,
    mode_setting,
    read_env,
    refuse_embedded,
    service_secret_setting,
    setting,
    validate,
)
from chatmesh_common.tls import TlsSettings

MIB = 1024 * 1024


@dataclass(frozen=True)
class MediaConfig:
    jwt_secret: str = jwt_secret_setting()
    # Signs media_service's questions to chat_service and checks chat_service's to it.
    service_secret: str = service_secret_setting(required=True)
    mode: str = mode_setting()
    grpc_bind: str = setting(
        "CHATMESH_GRPC_BIND", "127.0.0.1:50056", "host:port of the gRPC server (port 0: any free)"
    )
    records_store: str = setting(
        "CHATMESH_MEDIA_RECORDS_STORE",
        "sqlite",
        "where media records live: sqlite (embedded) or scylla (CHATMESH_SCYLLA_* settings)",
        choices=("sqlite", "scylla"),
    )
    records: str = setting(
        "CHATMESH_MEDIA_RECORDS",
        "chatmesh-media.db",
        "the SQLite file of the media records (embedded)",
    )
    # Set when records_store == "scylla": the cluster chat_service uses (docs/storage.md).
    scylla: ScyllaSettings | None = None
    blobs: str = setting(
        "CHATMESH_MEDIA_BLOBS",
        "fs",
        "fs (files served by media_service itself) or s3",
        choices=("fs", "s3"),
    )
    blob_dir: str = setting(
        "CHATMESH_MEDIA_DIR", "chatmesh-media", "the directory of the fs blob store"
    )
    http_bind: str = setting(
        "CHATMESH_MEDIA_HTTP_BIND",
        "127.0.0.1:50057",
        "host:port where the fs blob store serves its signed upload and download URLs",
    )
    public_url: str = setting(
        "CHATMESH_MEDIA_PUBLIC_URL",
        "",
        "the base URL apps reach the fs blob store at (default: http:// + the bound address)",
    )
    cors_origins: str = setting(
        "CHATMESH_MEDIA_CORS_ORIGINS",
        "",
        "comma-separated browser origins whose pages may use the fs store's URLs (CORS)",
    )
    url_secret: str = setting(
        "CHATMESH_MEDIA_URL_SECRET",
        "",
        "the HMAC key of the fs store's signed URLs (default: derived from the service secret)",
        secret=True,
    )
    s3_endpoint: str = setting("CHATMESH_S3_ENDPOINT", "", "the S3 endpoint URL (blobs=s3)")
    s3_region: str = setting("CHATMESH_S3_REGION", "us-east-1", "the S3 region")
    s3_bucket: str = setting("CHATMESH_S3_BUCKET", "chatmesh-media", "the S3 bucket")
    s3_access_key: str = setting("CHATMESH_S3_ACCESS_KEY", "", "the S3 access key id", secret=True)
    s3_secret_key: str = setting(
        "CHATMESH_S3_SECRET_KEY", "", "the S3 secret access key", secret=True
    )
    max_object_bytes: int = setting(
        "CHATMESH_MEDIA_MAX_BYTES", 25 * MIB, "the largest object an upload may be", minimum=1
    )
    allow_list: str = setting(
        "CHATMESH_MEDIA_ALLOW",
        "image/*,video/mp4,audio/mpeg,application/pdf,text/plain,application/zip",
        "comma-separated types uploads may be (sniffed from the bytes); `type/*` allowed",
    )
    upload_url_s: float = setting(
        "CHATMESH_MEDIA_UPLOAD_URL_S", 600.0, "how long an upload URL is valid", positive=True
    )
    download_url_s: float = setting(
        "CHATMESH_MEDIA_DOWNLOAD_URL_S", 300.0, "how long a download URL is valid", positive=True
    )
    uploads_per_minute: int = setting(
        "CHATMESH_MEDIA_UPLOADS_PER_MINUTE", 30, "uploads one user may start a minute", minimum=1
    )
    quota_bytes_per_day: int = setting(
        "CHATMESH_MEDIA_QUOTA_BYTES_PER_DAY",
        2048 * MIB,
        "bytes one user may upload in 24 hours",
        minimum=1,
    )
    clamd: str = setting(
        "CHATMESH_MEDIA_CLAMD",
        "",
        "host:port of a clamd to scan uploads with (besides the built-in EICAR check)",
    )
    pending_expiry_s: float = setting(
        "CHATMESH_MEDIA_PENDING_EXPIRY_S",
        3600.0,
        "uploads not completed within this are removed",
        positive=True,
    )
    deleted_grace_s: float = setting(
        "CHATMESH_MEDIA_DELETED_GRACE_S",
        86400.0,
        "objects of deleted messages' media are removed after this",
        minimum=0,
    )
    sweep_s: float = setting(
        "CHATMESH_MEDIA_SWEEP_S", 60.0, "how often the media sweeper runs", positive=True
    )
    # The same settings as chat_service's: a conversation kind's retention applies to its media.
    retention_direct_days: int = setting(
        "CHATMESH_RETENTION_DIRECT_DAYS", 0, "days direct messages are kept (0: forever)", minimum=0
    )
    retention_group_days: int = setting(
        "CHATMESH_RETENTION_GROUP_DAYS", 0, "days group messages are kept (0: forever)", minimum=0
    )
    retention_channel_days: int = setting(
        "CHATMESH_RETENTION_CHANNEL_DAYS",
        0,
        "days channel messages are kept (0: forever)",
        minimum=0,
    )
    bus: str = bus_setting()
    nats: NatsSettings = field(default_factory=NatsSettings)
    # TLS of its gRPC server and of its calls to other services (CHATMESH_TLS_*: docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    chat_target: str = setting(
        "CHATMESH_CHAT_TARGET", "127.0.0.1:50051", "where AccessService (chat_service) answers"
    )
    token_leeway_s: float = leeway_setting()
    metrics_host: str = setting(
        "CHATMESH_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_METRICS_PORT", 9108, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    shutdown_grace_s: float = grace_setting()
    drain_s: float = drain_setting()

    def __post_init__(self) -> None:
        validate(self)
        if self.service_secret == self.jwt_secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        if self.blobs == "s3" and not self.s3_endpoint:
            raise ConfigError("CHATMESH_MEDIA_BLOBS=s3 needs CHATMESH_S3_ENDPOINT")
        if self.blobs == "fs":
            refuse_embedded(self.mode, "the fs blob store", "set CHATMESH_MEDIA_BLOBS=s3")
        if self.records_store == "sqlite":
            refuse_embedded(
                self.mode, "the SQLite media records", "set CHATMESH_MEDIA_RECORDS_STORE=scylla"
            )
        if self.bus == "inprocess":
            refuse_embedded(self.mode, "the in-process bus", "set CHATMESH_BUS=nats")

    @property
    def allowed_types(self) -> tuple[str, ...]:
        return tuple(t.strip().lower() for t in self.allow_list.split(",") if t.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MediaConfig:
        source = dict(environ(env))
        config = read_env(
            cls, source, tls=TlsSettings.from_env(source), identity=IssuerSettings.from_env(source)
        )
        if config.bus == "nats":
            config = replace(config, nats=nats_settings_from_env(source))
        if config.records_store == "scylla":
            config = replace(config, scylla=ScyllaSettings.from_env(source))
        return config
