"""Envoy in front of chatmesh processes for tests and bench: the proxy itself, its config and its
certificates are the cluster launcher's (chatmesh_launcher/cluster/envoy.py, certs.py); here are
the tests' compositions of it.

    tls = make_tls(tmp_path / "tls")
    proxy = EnvoyProxy(require_binary("envoy", "envoy"), tmp_path / "envoy", tls,
                       chat=[chat.target], gateway=[gateway_target])
    with proxy:
        proxy.wait_healthy("chat", 1)
        grpc.insecure_channel(proxy.plaintext_target)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chatmesh_launcher.cluster.certs import TlsFiles, make_tls
from chatmesh_launcher.cluster.envoy import RENDER_SCRIPT, EnvoyProxy, load_renderer
from tests.servers.ports import free_port
from tests.servers.services import ChatmeshProcess, grpc_serving, http_ok

__all__ = [
    "RENDER_SCRIPT",
    "EdgeStack",
    "EnvoyProxy",
    "TlsFiles",
    "gateway_process",
    "load_renderer",
    "make_tls",
]


def gateway_process(
    log_path: Path,
    port: int,
    chat_target: str,
    secret: str,
    env: Mapping[str, str] | None = None,
) -> ChatmeshProcess:
    """`chatmesh serve gateway` on 127.0.0.1:`port`; ready when its /healthz answers 200."""
    return ChatmeshProcess(
        ["serve", "gateway"],
        {
            "CHATMESH_JWT_SECRET": secret,
            "CHATMESH_CHAT_TARGET": chat_target,
            "CHATMESH_WS_HOST": "127.0.0.1",
            "CHATMESH_WS_PORT": str(port),
            "CHATMESH_WS_METRICS_PORT": "-1",
            "CHATMESH_DRAIN_S": "0",
            **(env or {}),
        },
        log_path,
        http_ok(f"http://127.0.0.1:{port}/healthz"),
    )


class EdgeStack:
    """`chatmesh serve chat` (SQLite) and `chatmesh serve gateway`, with Envoy in front of both:
    the smallest setup where every kind of edge traffic has a real upstream. Blocking; a
    context manager."""

    def __init__(
        self,
        envoy_binary: str,
        directory: Path,
        tls: TlsFiles,
        secret: str,
        service_secret: str,
        gateway_env: Mapping[str, str] | None = None,
        **envoy_settings: Any,
    ) -> None:
        self.chat_target = f"127.0.0.1:{free_port()}"
        self.gateway_port = free_port()
        self.chat = ChatmeshProcess(
            ["serve", "chat"],
            {
                "CHATMESH_JWT_SECRET": secret,
                "CHATMESH_SERVICE_SECRET": service_secret,
                "CHATMESH_DATA_DIR": str(directory / "chat-data"),
                "CHATMESH_GRPC_BIND": self.chat_target,
                "CHATMESH_METRICS_PORT": "-1",
                "CHATMESH_DRAIN_S": "0",
            },
            directory / "chat.log",
            grpc_serving(self.chat_target),
        )
        self.gateway = gateway_process(
            directory / "gateway.log", self.gateway_port, self.chat_target, secret, gateway_env
        )
        self.envoy = EnvoyProxy(
            envoy_binary,
            directory / "envoy",
            tls,
            chat=[self.chat_target],
            gateway=[f"127.0.0.1:{self.gateway_port}"],
            **envoy_settings,
        )

    @property
    def gateway_url(self) -> str:
        """The gateway's own WebSocket address, not through Envoy."""
        return f"ws://127.0.0.1:{self.gateway_port}/v1/ws"

    def start(self) -> None:
        try:
            self.chat.start()
            self.gateway.start()
            self.envoy.start()
            self.envoy.wait_healthy("chat", 1)
            self.envoy.wait_healthy("gateway", 1)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.envoy.stop()
        self.gateway.stop()
        self.chat.stop()

    def __enter__(self) -> EdgeStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
