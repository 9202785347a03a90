"""Fixtures of the edge tests: a test CA and certificate, the Envoy binary, and one small stack
(`chatmesh serve chat` on SQLite, `chatmesh serve gateway`, Envoy in front) shared by a module.

The stack is built with the blocking `ChatmeshProcess` (not the async `*Process` classes) so one
stack can serve every test of a module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.binaries import require_binary
from tests.servers.envoy import EnvoyProxy, TlsFiles, make_tls
from tests.servers.ports import free_port
from tests.servers.services import ChatmeshProcess, grpc_serving, http_ok

SECRET = "envoy-test-user-secret-of-at-least-32-bytes"
SERVICE_SECRET = "envoy-test-service-secret-of-at-least-32-bytes"


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    return require_binary("envoy", "envoy")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost / 127.0.0.1 that it signed."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@dataclass
class Edge:
    """chat_service and a gateway, each reachable directly and through Envoy."""

    chat_target: str
    gateway_port: int
    envoy: EnvoyProxy

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/v1/ws"


def serve_chat_embedded(directory: Path, port: int) -> ChatmeshProcess:
    return ChatmeshProcess(
        ["serve", "chat"],
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
            "CHATMESH_DATA_DIR": str(directory / "chat-data"),
            "CHATMESH_GRPC_BIND": f"127.0.0.1:{port}",
            "CHATMESH_METRICS_PORT": "-1",
            "CHATMESH_DRAIN_S": "0",
        },
        directory / "chat.log",
        grpc_serving(f"127.0.0.1:{port}"),
    )


def serve_gateway(
    directory: Path, port: int, chat_target: str, name: str = "gateway"
) -> ChatmeshProcess:
    return ChatmeshProcess(
        ["serve", "gateway"],
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_CHAT_TARGET": chat_target,
            "CHATMESH_WS_HOST": "127.0.0.1",
            "CHATMESH_WS_PORT": str(port),
            "CHATMESH_WS_METRICS_PORT": "-1",
            "CHATMESH_DRAIN_S": "0",
        },
        directory / f"{name}.log",
        http_ok(f"http://127.0.0.1:{port}/healthz"),
    )


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, envoy_binary: str, tls_files: TlsFiles
) -> Iterator[Edge]:
    """`serve chat` (SQLite) and `serve gateway`, with Envoy routing to both."""
    directory = tmp_path_factory.mktemp("edge")
    chat_port, gateway_port = free_port(), free_port()
    chat_target = f"127.0.0.1:{chat_port}"
    chat = serve_chat_embedded(directory, chat_port)
    gateway = serve_gateway(directory, gateway_port, chat_target)
    proxy = EnvoyProxy(
        envoy_binary,
        directory / "envoy",
        tls_files,
        chat=[chat_target],
        gateway=[f"127.0.0.1:{gateway_port}"],
    )
    try:
        chat.start()
        gateway.start()
        proxy.start()
        proxy.wait_healthy("chat", 1)
        proxy.wait_healthy("gateway", 1)
        yield Edge(chat_target, gateway_port, proxy)
    finally:
        proxy.stop()
        gateway.stop()
        chat.stop()
