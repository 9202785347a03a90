"""chat_service settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from chatmesh_common.bus.nats_settings import NatsSettings, bus_from_env, nats_settings_from_env
from chatmesh_common.limits import LIMITS
from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import env_float, env_int

from .store.scylla import ScyllaSettings, ScyllaSettingsError


@dataclass(frozen=True)
class ChatConfig:
    jwt_secret: str
    # Verifies service tokens (AccessService); empty: no service token is accepted.
    service_secret: str = ""
    data_dir: str = "./chatmesh-data"
    grpc_bind: str = "127.0.0.1:50051"
    store: str = "sqlite"
    # Set when store == "scylla".
    scylla: ScyllaSettings | None = None
    metrics_host: str = "127.0.0.1"
    # -1 disables the metrics endpoint (tests, or when the dev runner serves one for all).
    metrics_port: int = -1
    max_body_bytes: int = LIMITS.max_body_bytes
    max_group_members: int = LIMITS.max_group_members
    default_page: int = LIMITS.default_page
    max_page: int = LIMITS.max_page
    shutdown_grace_s: float = 5.0
    # "inprocess" (one process, the default) or "nats" (a cluster; `nats` says how).
    bus: str = "inprocess"
    nats: NatsSettings = field(default_factory=NatsSettings)
    # Conversations with more members than this fan out on read (one publish per conversation).
    fanout_read_threshold: int = 500
    # How often the relay re-publishes events still pending in the outbox.
    relay_sweep_s: float = 2.0
    # Retention per conversation kind, in days; 0 keeps messages forever (the default).
    retention_direct_days: int = 0
    retention_group_days: int = 0
    retention_channel_days: int = 0
    # How often the retention sweeper runs (only when some kind has a retention).
    retention_sweep_s: float = 3600.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ChatConfig:
        env = dict(os.environ if env is None else env)
        secret = env.get("CHATMESH_JWT_SECRET", "")
        if not secret:
            raise ConfigError("CHATMESH_JWT_SECRET is required (the HS256 token secret)")
        service_secret = env.get("CHATMESH_SERVICE_SECRET", "")
        if service_secret and service_secret == secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        store = env.get("CHATMESH_STORE", "sqlite")
        if store not in ("sqlite", "scylla"):
            raise ConfigError(f"CHATMESH_STORE must be 'sqlite' or 'scylla', got {store!r}")
        scylla = None
        if store == "scylla":
            try:
                scylla = ScyllaSettings.from_env(env)
            except ScyllaSettingsError as exc:
                raise ConfigError(str(exc)) from exc
        bus = bus_from_env(env)
        threshold = env_int(env, "CHATMESH_FANOUT_READ_THRESHOLD", cls.fanout_read_threshold)
        if threshold < 0:
            raise ConfigError("CHATMESH_FANOUT_READ_THRESHOLD must be 0 or more")
        relay_sweep_s = env_float(env, "CHATMESH_RELAY_SWEEP_S", cls.relay_sweep_s)
        if relay_sweep_s <= 0:
            raise ConfigError("CHATMESH_RELAY_SWEEP_S must be positive")
        retention = {
            name: env_int(env, f"CHATMESH_RETENTION_{name.upper()}_DAYS", 0)
            for name in ("direct", "group", "channel")
        }
        for name, days in retention.items():
            if days < 0:
                raise ConfigError(f"CHATMESH_RETENTION_{name.upper()}_DAYS must be 0 or more")
        retention_sweep_s = env_float(env, "CHATMESH_RETENTION_SWEEP_S", cls.retention_sweep_s)
        if retention_sweep_s <= 0:
            raise ConfigError("CHATMESH_RETENTION_SWEEP_S must be positive")
        return cls(
            retention_direct_days=retention["direct"],
            retention_group_days=retention["group"],
            retention_channel_days=retention["channel"],
            retention_sweep_s=retention_sweep_s,
            bus=bus,
            nats=nats_settings_from_env(env) if bus == "nats" else NatsSettings(),
            fanout_read_threshold=threshold,
            relay_sweep_s=relay_sweep_s,
            jwt_secret=secret,
            service_secret=service_secret,
            data_dir=env.get("CHATMESH_DATA_DIR", cls.data_dir),
            grpc_bind=env.get("CHATMESH_GRPC_BIND", cls.grpc_bind),
            store=store,
            scylla=scylla,
            metrics_host=env.get("CHATMESH_METRICS_HOST", cls.metrics_host),
            metrics_port=env_int(env, "CHATMESH_METRICS_PORT", 9101),
            max_body_bytes=env_int(env, "CHATMESH_MAX_BODY_BYTES", cls.max_body_bytes),
            max_group_members=env_int(env, "CHATMESH_MAX_GROUP_MEMBERS", cls.max_group_members),
        )
