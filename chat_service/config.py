"""chat_service settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(ValueError):
    """A required setting is missing or malformed: the service refuses to start."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class ChatConfig:
    jwt_secret: str
    data_dir: str = "./chatmesh-data"
    grpc_bind: str = "127.0.0.1:50051"
    store: str = "sqlite"
    metrics_host: str = "127.0.0.1"
    # -1 disables the metrics endpoint (tests, or when the dev runner serves one for all).
    metrics_port: int = -1
    max_body_bytes: int = 16 * 1024
    max_group_members: int = 1000
    default_page: int = 50
    max_page: int = 200
    shutdown_grace_s: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ChatConfig:
        env = dict(os.environ if env is None else env)
        secret = env.get("CHATMESH_JWT_SECRET", "")
        if not secret:
            raise ConfigError("CHATMESH_JWT_SECRET is required (the HS256 token secret)")
        store = env.get("CHATMESH_STORE", "sqlite")
        if store not in ("sqlite",):
            raise ConfigError(f"CHATMESH_STORE must be 'sqlite', got {store!r}")
        return cls(
            jwt_secret=secret,
            data_dir=env.get("CHATMESH_DATA_DIR", cls.data_dir),
            grpc_bind=env.get("CHATMESH_GRPC_BIND", cls.grpc_bind),
            store=store,
            metrics_host=env.get("CHATMESH_METRICS_HOST", cls.metrics_host),
            metrics_port=_int(env, "CHATMESH_METRICS_PORT", 9101),
            max_body_bytes=_int(env, "CHATMESH_MAX_BODY_BYTES", cls.max_body_bytes),
            max_group_members=_int(env, "CHATMESH_MAX_GROUP_MEMBERS", cls.max_group_members),
        )
