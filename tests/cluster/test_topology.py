"""The cluster's environments: each one is accepted by its service's own configuration in
cluster mode, and each gateway talks to its own chat replica, as documented."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from chat_service.config import ChatConfig
from chatmesh_launcher.cluster.topology import (
    GATEWAYS,
    GRPC_SERVICES,
    Dependencies,
    Secrets,
    gateway_env,
    migrate_env,
    serve_name,
    service_envs,
)
from gateway_ws.config import GatewayConfig
from media_service.config import MediaConfig
from notify_service.config import NotifyConfig
from presence_service.config import PresenceConfig
from search_service.config import SearchConfig

pytestmark = pytest.mark.timeout(10)

DEPS = Dependencies(
    nats_url="nats://127.0.0.1:4222",
    redis_url="redis://127.0.0.1:6379/0",
    cql_host="127.0.0.1",
    cql_port=9042,
    cql_datacenter="datacenter1",
    s3_url="http://127.0.0.1:8333",
    s3_region="us-east-1",
    s3_access_key="key",
    s3_secret_key="secret",
)
SECRETS = Secrets(jwt="j" * 32, service="s" * 32)
TARGETS = {name: f"127.0.0.1:{20000 + i}" for i, name in enumerate(GRPC_SERVICES + GATEWAYS)}

CONFIGS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "chat": ChatConfig.from_env,
    "presence": PresenceConfig.from_env,
    "search": SearchConfig.from_env,
    "media": MediaConfig.from_env,
    "notify": NotifyConfig.from_env,
    "gateway": GatewayConfig.from_env,
}


@pytest.mark.parametrize("name", GRPC_SERVICES)
def test_each_service_accepts_its_environment(name: str, tmp_path: Path) -> None:
    """The service's configuration builds from exactly the environment `up` gives it."""
    env = service_envs(tmp_path, DEPS, SECRETS, TARGETS)[name]
    config = CONFIGS[serve_name(name)](env)
    assert config.mode == ("embedded" if name == "search" else "cluster")


@pytest.mark.parametrize("index", [1, 2])
def test_each_gateway_uses_its_own_chat_replica(index: int) -> None:
    """gateway-N listens where the table says and talks to chat-N, presence and the rest."""
    config = GatewayConfig.from_env(gateway_env(index, DEPS, SECRETS, TARGETS))
    assert f"{config.host}:{config.port}" == TARGETS[f"gateway-{index}"]
    assert config.chat_target == TARGETS[f"chat-{index}"]
    assert config.presence_target == TARGETS["presence"]
    assert config.mode == "cluster"


def test_migrate_gets_the_chat_store(tmp_path: Path) -> None:
    """`chatmesh migrate` reads the same store settings as the chat replicas."""
    chat = service_envs(tmp_path, DEPS, SECRETS, TARGETS)["chat-1"]
    migrate = migrate_env(DEPS, SECRETS)
    assert {k: v for k, v in chat.items() if k.startswith("CHATMESH_SCYLLA")} == {
        k: v for k, v in migrate.items() if k.startswith("CHATMESH_SCYLLA")
    }
    assert ChatConfig.from_env(migrate).store == "scylla"
