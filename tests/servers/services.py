"""chatmesh's own processes, for tests and bench: the one launcher of `chatmesh <command>`.

`ChatmeshProcess` runs `python -m chatmesh_launcher <command>` with an environment, sends its
output to a log file (kept across restarts; its tail is shown when the process dies early), and
waits until a readiness probe passes: gRPC health SERVING, or the gateway's `/healthz`. Its
methods block (bench and sync fixtures call them directly); async tests use the `*Process` classes
below, which run the same methods in a thread so the test's event loop keeps running.

Every service runs on a port fixed at construction, so a test can SIGKILL it and start it again
where its clients expect it; a chat_service's `channel` lives across such restarts. A service
given CHATMESH_TLS_* settings is probed and called over TLS with those same settings, as a peer
service would call it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh_common.tls import TlsSettings, open_channel
from tests.servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# Reconnect within ~100 ms of a restart instead of grpc's default backoff of a second or more.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]

Probe = Callable[[], bool]


def _sync_channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def grpc_serving(target: str, credentials: grpc.ChannelCredentials | None = None) -> Probe:
    """Ready when the server's overall gRPC health is SERVING."""

    def probe() -> bool:
        with _sync_channel(target, credentials) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def http_ok(url: str, context: ssl.SSLContext | None = None) -> Probe:
    """Ready when `url` answers 200 (the gateway's /healthz)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=0.5, context=context) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return probe


class ChatmeshProcess:
    """`chatmesh <command>` as a child process: start (until ready), stop (SIGTERM), kill."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Probe,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"chatmesh {self.command[0]} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def spawn(self) -> None:
        """Starts the process without waiting for it to be ready."""
        env = {**os.environ, "CHATMESH_LOG_LEVEL": "WARNING", **self.env}
        # The child imports this checkout first (not whatever the installed package points at).
        paths = (str(REPO), str(REPO / "gen"), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatmesh_launcher", *self.command],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"chatmesh {' '.join(self.command)} ({self.log_path.name}) exited with"
                f" {self.process.returncode}:\n{self.log_tail()}"
            )

    def start(self, wait_s: float = 30.0) -> None:
        """Spawns the process and waits until its readiness probe passes."""
        self.spawn()
        deadline = time.monotonic() + wait_s
        while not self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"chatmesh {self.command[0]} not ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def wait(self, wait_s: float) -> int:
        """Waits for the process to exit on its own; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout=wait_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (a graceful drain), then SIGKILL after `grace_s`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()


class ServiceProcess:
    """`chatmesh serve <service>` on a fixed port, for async tests."""

    def __init__(
        self,
        service: str,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None,
        own_env: Callable[[int], Mapping[str, str]],
        ready: Callable[[int, TlsSettings], Probe],
    ) -> None:
        self.service = service
        self.port = port or free_port()
        # No drain by default: tests stop and restart services many times.
        settings = {"CHATMESH_DRAIN_S": "0", **env, **own_env(self.port)}
        # The service's own TLS settings: what a peer service would call it with.
        self.tls = TlsSettings.from_env(settings)
        self.process = ChatmeshProcess(
            ["serve", service], settings, log_path, ready(self.port, self.tls)
        )

    @property
    def env(self) -> dict[str, str]:
        return self.process.env

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def start(self, wait_s: float = 30.0) -> None:
        await asyncio.to_thread(self.process.start, wait_s)

    async def kill(self) -> None:
        await asyncio.to_thread(self.process.kill)

    async def stop(self, grace_s: float = 10.0) -> None:
        await asyncio.to_thread(self.process.stop, grace_s)


def _grpc_env(port: int) -> dict[str, str]:
    return {"CHATMESH_GRPC_BIND": f"127.0.0.1:{port}", "CHATMESH_METRICS_PORT": "-1"}


def _grpc_ready(port: int, tls: TlsSettings) -> Probe:
    return grpc_serving(f"127.0.0.1:{port}", tls.channel_credentials())


class ChatServiceProcess(ServiceProcess):
    """`chatmesh serve chat`; ready when its gRPC health check says SERVING."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("chat", env, log_path, port, _grpc_env, _grpc_ready)
        self.channel = open_channel(self.target, self.tls, _CHANNEL_OPTIONS)

    async def close(self) -> None:
        await self.stop()
        await self.channel.close(None)


class PresenceServiceProcess(ServiceProcess):
    """`chatmesh serve presence`; ready when its gRPC health check says SERVING."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("presence", env, log_path, port, _grpc_env, _grpc_ready)


class MediaServiceProcess(ServiceProcess):
    """`chatmesh serve media`; ready when its gRPC health check says SERVING."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("media", env, log_path, port, _grpc_env, _grpc_ready)
        self.channel = open_channel(self.target, self.tls, _CHANNEL_OPTIONS)

    async def close(self) -> None:
        await self.stop()
        await self.channel.close(None)


def _gateway_env(port: int) -> dict[str, str]:
    return {
        "CHATMESH_WS_HOST": "127.0.0.1",
        "CHATMESH_WS_PORT": str(port),
        "CHATMESH_WS_METRICS_PORT": "-1",
    }


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """What a client trusting the deployment's CA connects to a TLS gateway with."""
    if not tls.serving:
        return None
    return ssl.create_default_context(cafile=tls.ca_file or None)


def _gateway_ready(port: int, tls: TlsSettings) -> Probe:
    scheme = "https" if tls.serving else "http"
    return http_ok(f"{scheme}://127.0.0.1:{port}/healthz", client_ssl_context(tls))


class GatewayProcess(ServiceProcess):
    """`chatmesh serve gateway`; ready when its /healthz answers 200."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("gateway", env, log_path, port, _gateway_env, _gateway_ready)

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls.serving else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/v1/ws"


class DevProcess(ChatmeshProcess):
    """`chatmesh dev` on free ports with a data dir; blocking methods (e2e tests and bench)."""

    def __init__(
        self, data_dir: Path, secret: str, log_path: Path | None = None, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.grpc_port = free_port()
        self.ws_port = free_port()
        self.metrics_port = free_port()
        super().__init__(
            [
                "dev",
                "--data-dir", str(data_dir),
                "--grpc", self.grpc_target,
                "--ws", f"127.0.0.1:{self.ws_port}",
                "--metrics", f"127.0.0.1:{self.metrics_port}",
            ],
            {"CHATMESH_JWT_SECRET": secret, **env},
            log_path or data_dir.parent / f"{data_dir.name}-dev.log",
            grpc_serving(self.grpc_target),
        )  # fmt: skip

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/ws"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"
