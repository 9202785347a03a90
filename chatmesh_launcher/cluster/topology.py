"""What each process of the local cluster is told: its settings, as environment variables.

Pure: given where the dependencies listen and where each service will listen, the environment of
every `chatmesh serve` process (and of `chatmesh migrate`). Nothing here starts anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KEYSPACE = "chatmesh"
S3_BUCKET = "chatmesh-media"
# The gRPC services in start order; `chatmesh serve` takes the name before the dash.
GRPC_SERVICES = ("chat-1", "chat-2", "presence", "search", "media", "notify")
GATEWAYS = ("gateway-1", "gateway-2")


@dataclass(frozen=True)
class Dependencies:
    """Where the cluster's servers listen, and the credentials they take."""

    nats_url: str
    redis_url: str
    cql_host: str
    cql_port: int
    cql_datacenter: str
    s3_url: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str


@dataclass(frozen=True)
class Secrets:
    jwt: str
    service: str


def serve_name(component: str) -> str:
    """The `chatmesh serve` name of a component: chat-1 -> chat."""
    return component.split("-")[0]


def common_env(deps: Dependencies, secrets: Secrets) -> dict[str, str]:
    return {
        "CHATMESH_MODE": "cluster",
        "CHATMESH_JWT_SECRET": secrets.jwt,
        "CHATMESH_SERVICE_SECRET": secrets.service,
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": deps.nats_url,
        "CHATMESH_LOG_LEVEL": "INFO",
        "CHATMESH_METRICS_PORT": "-1",
        "CHATMESH_DRAIN_S": "0.5",
    }


def scylla_env(deps: Dependencies) -> dict[str, str]:
    return {
        "CHATMESH_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": deps.cql_host,
        "CHATMESH_SCYLLA_PORT": str(deps.cql_port),
        "CHATMESH_SCYLLA_DC": deps.cql_datacenter,
        "CHATMESH_SCYLLA_KEYSPACE": KEYSPACE,
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
    }


def migrate_env(deps: Dependencies, secrets: Secrets) -> dict[str, str]:
    return {**common_env(deps, secrets), **scylla_env(deps)}


def service_envs(
    directory: Path, deps: Dependencies, secrets: Secrets, targets: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The environment of each gRPC service, by component name (GRPC_SERVICES)."""
    t = targets
    common = common_env(deps, secrets)
    scylla = scylla_env(deps)

    def chat(index: int) -> dict[str, str]:
        return {
            **common,
            **scylla,
            "CHATMESH_GRPC_BIND": t[f"chat-{index}"],
            "CHATMESH_DATA_DIR": str(directory / f"chat-{index}"),
            "CHATMESH_NATS_CONSUMERS": "search,notify",
            "CHATMESH_MEDIA_TARGET": t["media"],
        }

    return {
        "chat-1": chat(1),
        "chat-2": chat(2),
        "presence": {
            **common,
            "CHATMESH_GRPC_BIND": t["presence"],
            "CHATMESH_PRESENCE_BACKEND": "redis",
            "CHATMESH_REDIS_URL": deps.redis_url,
            "CHATMESH_CHAT_TARGET": t["chat-1"],
        },
        "search": {
            **common,
            # fts5 is an embedded engine (one replica), which cluster mode refuses.
            "CHATMESH_MODE": "embedded",
            "CHATMESH_GRPC_BIND": t["search"],
            "CHATMESH_SEARCH_INDEX": str(directory / "search" / "search.db"),
            "CHATMESH_CHAT_TARGET": t["chat-2"],
        },
        "media": {
            **common,
            **scylla,
            "CHATMESH_GRPC_BIND": t["media"],
            "CHATMESH_MEDIA_RECORDS_STORE": "scylla",
            "CHATMESH_MEDIA_BLOBS": "s3",
            "CHATMESH_S3_ENDPOINT": deps.s3_url,
            "CHATMESH_S3_REGION": deps.s3_region,
            "CHATMESH_S3_BUCKET": S3_BUCKET,
            "CHATMESH_S3_ACCESS_KEY": deps.s3_access_key,
            "CHATMESH_S3_SECRET_KEY": deps.s3_secret_key,
            "CHATMESH_CHAT_TARGET": t["chat-1"],
        },
        "notify": {
            **common,
            "CHATMESH_GRPC_BIND": t["notify"],
            # Cluster mode refuses notify's SQLite queue; Redis is shared by any replica.
            "CHATMESH_NOTIFY_STORE": "redis",
            "CHATMESH_REDIS_URL": deps.redis_url,
            "CHATMESH_CHAT_TARGET": t["chat-2"],
            "CHATMESH_PRESENCE_TARGET": t["presence"],
        },
    }


def gateway_env(
    index: int, deps: Dependencies, secrets: Secrets, targets: Mapping[str, str]
) -> dict[str, str]:
    """The environment of gateway-`index`, which listens on targets[f"gateway-{index}"]."""
    t = targets
    host, _, port = t[f"gateway-{index}"].rpartition(":")
    return {
        **common_env(deps, secrets),
        "CHATMESH_WS_HOST": host,
        "CHATMESH_WS_PORT": port,
        "CHATMESH_WS_METRICS_PORT": "-1",
        # Each gateway on its own chat replica: both replicas serve sockets.
        "CHATMESH_CHAT_TARGET": t[f"chat-{index}"],
        "CHATMESH_PRESENCE_TARGET": t["presence"],
        "CHATMESH_MEDIA_TARGET": t["media"],
        "CHATMESH_SEARCH_TARGET": t["search"],
        "CHATMESH_NOTIFY_TARGET": t["notify"],
        # Behind Envoy every socket comes from Envoy's address: no per-address caps.
        "CHATMESH_WS_MAX_SOCKETS_PER_IP": "0",
        "CHATMESH_WS_AUTH_FAILURES_PER_MIN": "0",
    }
