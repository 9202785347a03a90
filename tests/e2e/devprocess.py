"""`chatmesh dev` as a real subprocess on free ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers.ports import free_port

SECRET = "e2e-secret-of-at-least-thirty-two-bytes"


class DevProcess:
    """Runs `chatmesh dev` with a data dir; start() waits until gRPC health says SERVING."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.grpc_port = free_port()
        self.ws_port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-dev.log"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v1/ws"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        env = {**os.environ, "CHATMESH_JWT_SECRET": SECRET, "CHATMESH_LOG_LEVEL": "WARNING"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chatmesh_common.cli",
                    "dev",
                    "--data-dir",
                    str(self.data_dir),
                    "--grpc",
                    self.grpc_target,
                    "--ws",
                    f"127.0.0.1:{self.ws_port}",
                    "--metrics",
                    f"127.0.0.1:{self.metrics_port}",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"chatmesh dev exited: {self.log_path.read_text()[-2000:]}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chatmesh dev not serving: {self.log_path.read_text()}")
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
