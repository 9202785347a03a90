"""chatmesh's own processes as children: `python -m chatmesh_launcher <command>` with an
environment, its output in a log file (kept across restarts; its tail is shown when the process
dies early), started until a readiness probe passes: gRPC health SERVING, or the gateway's
`/healthz`. Blocking methods; the tests' async wrappers live in tests/servers/services.py.
"""

from __future__ import annotations

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

# The checkout this package runs from: children import it (and its gen/) first.
REPO = Path(__file__).resolve().parents[2]

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
        # True: setsid (its own process group), so it outlives this process (see ServerProcess).
        self.detached = False

    @property
    def pid(self) -> int:
        assert self.process is not None, f"chatmesh {self.command[0]} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def child_env(self) -> dict[str, str]:
        """This process's environment with the command's settings on top."""
        env = {**os.environ, "CHATMESH_LOG_LEVEL": "WARNING", **self.env}
        # The child imports this checkout first (not whatever the installed package points at).
        paths = (str(REPO), str(REPO / "gen"), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return env

    def spawn(self) -> None:
        """Starts the process without waiting for it to be ready."""
        env = self.child_env()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chatmesh_launcher", *self.command],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
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
