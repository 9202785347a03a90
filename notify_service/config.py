"""notify_service settings, each declared once (chatmesh_common.settings), read from the env.

Provider credentials are notify_service.providers.settings.ProviderSettings (`providers`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.bus.nats_settings import NatsSettings, nats_settings_from_env
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

from .providers.settings import ProviderSettings


@dataclass(frozen=True)
class NotifyConfig:
    jwt_secret: str = jwt_secret_setting()
    # Signs notify_service's service token (its questions to chat_service and presence).
    service_secret: str = service_secret_setting(required=True)
    mode: str = mode_setting()
    grpc_bind: str = setting(
        "CHATMESH_GRPC_BIND", "127.0.0.1:50055", "host:port of the gRPC server (port 0: any free)"
    )
    store: str = setting(
        "CHATMESH_NOTIFY_STORE",
        "sqlite",
        "sqlite (embedded, one replica) or redis (shared by every replica)",
        choices=("sqlite", "redis"),
    )
    store_path: str = setting(
        "CHATMESH_NOTIFY_DB", "chatmesh-notify.db", "the SQLite file of the sqlite notify store"
    )
    # The same variable presence_service reads: one Redis may serve both (their prefixes differ).
    redis_url: str = setting(
        "CHATMESH_REDIS_URL",
        "",
        "the Redis of the redis notify store; it must persist (appendonly: docs/notify.md)",
    )
    redis_prefix: str = setting(
        "CHATMESH_NOTIFY_REDIS_PREFIX",
        "chatmesh:notify:",
        "prefix of every Redis key the redis notify store writes",
    )
    lease_s: float = setting(
        "CHATMESH_NOTIFY_LEASE_S",
        120.0,
        "seconds a replica holds a push it claimed (redis store); then another replica may send"
        " it; above CHATMESH_PUSH_TIMEOUT_S",
        positive=True,
    )
    # The bus chat_service writes its durable log to; the consumer reads it.
    bus: str = bus_setting()
    nats: NatsSettings = field(default_factory=NatsSettings)
    # APNs, FCM, Web Push and webhook credentials; a provider without them is not built.
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    # TLS of its gRPC server and of its calls to other services (CHATMESH_TLS_*: docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)
    chat_target: str = setting(
        "CHATMESH_CHAT_TARGET", "127.0.0.1:50051", "where AccessService (chat_service) answers"
    )
    presence_target: str = setting(
        "CHATMESH_PRESENCE_TARGET", "127.0.0.1:50052", "where PresenceService answers"
    )
    max_attempts: int = setting(
        "CHATMESH_NOTIFY_MAX_ATTEMPTS", 6, "tries of one push before its dead letter", minimum=1
    )
    backoff_base_s: float = setting(
        "CHATMESH_NOTIFY_BACKOFF_BASE_S",
        1.0,
        "wait after the first failed try; doubles per try, with jitter",
        positive=True,
    )
    backoff_max_s: float = setting(
        "CHATMESH_NOTIFY_BACKOFF_MAX_S", 300.0, "the longest wait between tries", positive=True
    )
    concurrency: int = setting(
        "CHATMESH_NOTIFY_CONCURRENCY", 16, "provider calls in flight at once", minimum=1
    )
    consumer_lanes: int = setting(
        "CHATMESH_NOTIFY_CONSUMER_LANES",
        32,
        "conversations whose events are turned into pushes at once (each conversation's in"
        " log order)",
        minimum=1,
    )
    slow_after_s: float = setting(
        "CHATMESH_NOTIFY_SLOW_AFTER_S",
        2.0,
        "a provider call still waiting after this stops holding one of the CHATMESH_NOTIFY_"
        "CONCURRENCY slots (up to 4 x that many slow calls), so a hanging target does not hold"
        " up others",
        positive=True,
    )
    device_interval_s: float = setting(
        "CHATMESH_NOTIFY_DEVICE_INTERVAL_S",
        1.0,
        "least seconds between two pushes to one device (a burst coalesces meanwhile)",
        minimum=0,
    )
    ack_wait_s: float = setting(
        "CHATMESH_NOTIFY_ACK_WAIT_S",
        30.0,
        "seconds before an event the consumer took but did not finish is delivered again",
        positive=True,
    )
    retention_s: float = setting(
        "CHATMESH_NOTIFY_RETENTION_S",
        8 * 24 * 3600.0,
        "seconds finished pushes are remembered (exactly once); above the event log's max age",
        positive=True,
    )
    token_leeway_s: float = leeway_setting()
    metrics_host: str = setting(
        "CHATMESH_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_METRICS_PORT", 9106, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    shutdown_grace_s: float = grace_setting()
    drain_s: float = drain_setting()

    def __post_init__(self) -> None:
        validate(self)
        if self.service_secret == self.jwt_secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        if self.store == "sqlite":
            refuse_embedded(self.mode, "the sqlite notify store", "set CHATMESH_NOTIFY_STORE=redis")
        if self.store == "redis":
            if not self.redis_url:
                raise ConfigError("CHATMESH_REDIS_URL is required for the redis notify store")
            if self.lease_s <= self.providers.timeout_s:
                raise ConfigError(
                    "CHATMESH_NOTIFY_LEASE_S must exceed CHATMESH_PUSH_TIMEOUT_S, or a slow push"
                    " is claimed by another replica and sent twice"
                )
        if self.bus == "inprocess":
            refuse_embedded(self.mode, "the in-process bus", "set CHATMESH_BUS=nats")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifyConfig:
        source = dict(environ(env))
        # Providers first: the config checks the claim lease against their timeout.
        config = read_env(
            cls,
            source,
            identity=IssuerSettings.from_env(source),
            providers=ProviderSettings.from_env(source),
            tls=TlsSettings.from_env(source),
        )
        if config.bus == "nats":
            config = replace(config, nats=nats_settings_from_env(source))
        return config
