"""presence_service settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from chatmesh_common.bus.nats_settings import NatsSettings, bus_from_env, nats_settings_from_env
from chatmesh_common.limits import LIMITS, MAX_TYPING_TTL_S
from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import env_float, env_int

from .presence import PresenceSettings


@dataclass(frozen=True)
class PresenceConfig:
    jwt_secret: str
    # Signs presence_service's service token (its AccessService questions to chat_service).
    service_secret: str = ""
    grpc_bind: str = "127.0.0.1:50052"
    # "memory" (embedded, one replica) or "redis" (shared by every replica).
    backend: str = "memory"
    redis_url: str = ""
    redis_prefix: str = "chatmesh:presence:"
    # The bus chat_service uses: presence changes cross replicas on it, and typing reaches the
    # members' event streams through it. "inprocess" only works inside `chatmesh dev`.
    bus: str = "inprocess"
    nats: NatsSettings = field(default_factory=NatsSettings)
    # Where AccessService (chat_service) answers visibility questions.
    chat_target: str = "127.0.0.1:50051"
    ttl_s: float = 30.0
    typing_ttl_s: float = 6.0
    typing_per_second: float = LIMITS.typing_per_second
    sweep_interval_s: float = 1.0
    access_cache_s: float = 2.0
    metrics_host: str = "127.0.0.1"
    # -1 disables the metrics endpoint (tests, or when the dev runner serves one for all).
    metrics_port: int = -1
    shutdown_grace_s: float = 5.0

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
    def from_env(cls, env: dict[str, str] | None = None) -> PresenceConfig:
        env = dict(os.environ if env is None else env)
        secret = env.get("CHATMESH_JWT_SECRET", "")
        if not secret:
            raise ConfigError("CHATMESH_JWT_SECRET is required (the HS256 token secret)")
        service_secret = env.get("CHATMESH_SERVICE_SECRET", "")
        if not service_secret:
            raise ConfigError(
                "CHATMESH_SERVICE_SECRET is required (signs presence's calls to chat_service)"
            )
        if service_secret == secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        redis_url = env.get("CHATMESH_REDIS_URL", "")
        backend = env.get("CHATMESH_PRESENCE_BACKEND", "") or ("redis" if redis_url else "memory")
        if backend not in ("memory", "redis"):
            raise ConfigError(
                f"CHATMESH_PRESENCE_BACKEND must be 'memory' or 'redis', got {backend!r}"
            )
        if backend == "redis" and not redis_url:
            raise ConfigError("CHATMESH_REDIS_URL is required for the redis presence backend")
        ttl_s = env_float(env, "CHATMESH_PRESENCE_TTL_S", cls.ttl_s, minimum=0)
        if ttl_s <= 0:
            raise ConfigError("CHATMESH_PRESENCE_TTL_S must be positive")
        typing_ttl_s = env_float(env, "CHATMESH_TYPING_TTL_S", cls.typing_ttl_s, minimum=0)
        if not 0 < typing_ttl_s <= MAX_TYPING_TTL_S:
            raise ConfigError(f"CHATMESH_TYPING_TTL_S must be in (0, {MAX_TYPING_TTL_S:g}]")
        typing_per_second = env_float(
            env, "CHATMESH_TYPING_PER_SECOND", cls.typing_per_second, minimum=0
        )
        if typing_per_second <= 0:
            raise ConfigError("CHATMESH_TYPING_PER_SECOND must be positive")
        bus = bus_from_env(env)
        return cls(
            jwt_secret=secret,
            service_secret=service_secret,
            grpc_bind=env.get("CHATMESH_GRPC_BIND", cls.grpc_bind),
            bus=bus,
            nats=nats_settings_from_env(env) if bus == "nats" else NatsSettings(),
            backend=backend,
            redis_url=redis_url,
            redis_prefix=env.get("CHATMESH_REDIS_PREFIX", cls.redis_prefix),
            chat_target=env.get("CHATMESH_CHAT_TARGET", cls.chat_target),
            ttl_s=ttl_s,
            typing_ttl_s=typing_ttl_s,
            typing_per_second=typing_per_second,
            sweep_interval_s=env_float(
                env, "CHATMESH_PRESENCE_SWEEP_S", cls.sweep_interval_s, minimum=0
            ),
            access_cache_s=env_float(
                env, "CHATMESH_PRESENCE_ACCESS_CACHE_S", cls.access_cache_s, minimum=0
            ),
            metrics_host=env.get("CHATMESH_METRICS_HOST", cls.metrics_host),
            metrics_port=env_int(env, "CHATMESH_METRICS_PORT", 9103),
        )
