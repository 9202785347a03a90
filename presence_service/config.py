"""presence_service settings, each declared once (chatmesh_common.settings), read from the env."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.bus.nats_settings import NatsSettings, nats_settings_from_env
from chatmesh_common.identity import IssuerSettings
from chatmesh_common.limits import LIMITS, MAX_TYPING_TTL_S
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

from .presence import PresenceSettings


@dataclass(frozen=True)
class PresenceConfig:
    jwt_secret: str = jwt_secret_setting()
    # Signs presence_service's service token (its AccessService questions to chat_service).
    service_secret: str = service_secret_setting(required=True)
    mode: str = mode_setting()
    grpc_bind: str = setting(
        "CHATMESH_GRPC_BIND", "127.0.0.1:50052", "host:port of the gRPC server (port 0: any free)"
    )
    backend: str = setting(
        "CHATMESH_PRESENCE_BACKEND",
        "memory",
        "memory (one replica) or redis (shared); redis when unset and CHATMESH_REDIS_URL is set",
        choices=("memory", "redis"),
    )
    redis_url: str = setting("CHATMESH_REDIS_URL", "", "the Redis of the redis backend")
    redis_prefix: str = setting(
        "CHATMESH_REDIS_PREFIX", "chatmesh:presence:", "prefix of every Redis key presence writes"
    )
    # The bus chat_service uses: presence changes cross replicas on it, and typing reaches the
    # members' event streams through it. "inprocess" only works inside `chatmesh dev`.
    bus: str = bus_setting()
    nats: NatsSettings = field(default_factory=NatsSettings)
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    # TLS of its gRPC server and of its calls to other services (CHATMESH_TLS_*: docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)
    chat_target: str = setting(
        "CHATMESH_CHAT_TARGET", "127.0.0.1:50051", "where AccessService (chat_service) answers"
    )
    ttl_s: float = setting(
        "CHATMESH_PRESENCE_TTL_S",
        30.0,
        "seconds a device stays online without a heartbeat",
        positive=True,
    )
    typing_ttl_s: float = setting(
        "CHATMESH_TYPING_TTL_S",
        6.0,
        "seconds a typing signal lasts without a repeat",
        positive=True,
        maximum=MAX_TYPING_TTL_S,
    )
    typing_per_second: float = setting(
        "CHATMESH_TYPING_PER_SECOND",
        LIMITS.typing_per_second,
        "typing signals per device per second",
        positive=True,
    )
    sweep_interval_s: float = setting(
        "CHATMESH_PRESENCE_SWEEP_S", 1.0, "how often vanished devices are expired", positive=True
    )
    access_cache_s: float = setting(
        "CHATMESH_PRESENCE_ACCESS_CACHE_S", 2.0, "seconds a visibility answer is cached", minimum=0
    )
    token_leeway_s: float = leeway_setting()
    metrics_host: str = setting(
        "CHATMESH_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_METRICS_PORT", 9103, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    shutdown_grace_s: float = grace_setting()
    drain_s: float = drain_setting()

    def __post_init__(self) -> None:
        validate(self)
        if self.service_secret == self.jwt_secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        if self.backend == "redis" and not self.redis_url:
            raise ConfigError("CHATMESH_REDIS_URL is required for the redis presence backend")
        if self.backend == "memory":
            refuse_embedded(self.mode, "the memory presence backend", "set CHATMESH_REDIS_URL")
        if self.bus == "inprocess":
            refuse_embedded(self.mode, "the in-process bus", "set CHATMESH_BUS=nats")

    @property
    def settings(self) -> PresenceSettings:
        return PresenceSettings(
            ttl_s=self.ttl_s,
            typing_ttl_s=self.typing_ttl_s,
            typing_per_second=self.typing_per_second,
            sweep_interval_s=self.sweep_interval_s,
            access_cache_s=self.access_cache_s,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PresenceConfig:
        source = dict(environ(env))
        # An unset backend follows the Redis URL: setting only the URL is enough.
        if (
            not source.get("CHATMESH_PRESENCE_BACKEND", "").strip()
            and source.get("CHATMESH_REDIS_URL", "").strip()
        ):
            source["CHATMESH_PRESENCE_BACKEND"] = "redis"
        config = read_env(cls, source)
        if config.bus == "nats":
            config = replace(config, nats=nats_settings_from_env(source))
        return replace(
            config, identity=IssuerSettings.from_env(source), tls=TlsSettings.from_env(source)
        )
