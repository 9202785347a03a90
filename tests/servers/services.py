"""chatmesh's own services as real processes (`python -m chat_service`, `python -m gateway_ws`).

Each runs on a port fixed at construction, so a test can SIGKILL it and start it again where its
clients expect it; a chat_service's `channel` lives across such restarts (it reconnects quickly).
Output goes to a log file whose tail is shown when a process dies early.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# Reconnect within ~100 ms of a restart instead of grpc's default backoff of a second or more.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class ServiceProcess:
    """`python -m <module>` with an environment; start, kill (SIGKILL), stop (SIGTERM)."""

    def __init__(
        self, module: str, env: Mapping[str, str], log_path: Path, port: int | None = None
    ) -> None:
        self.module = module
        self.env = dict(env)
        self.log_path = log_path
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.module} is not running"
        return self.process.pid

    async def _spawn(self, own_env: Mapping[str, str]) -> None:
        env = {**os.environ, "CHATMESH_LOG_LEVEL": "WARNING", **self.env, **own_env}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                env=env,
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            pytest.fail(
                f"{self.module} ({self.log_path.name}) exited with {self.process.returncode}:\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM (a graceful drain), then SIGKILL after `grace_s`."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()


class ChatServiceProcess(ServiceProcess):
    """`python -m chat_service`; ready when its gRPC health check says SERVING."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("chat_service", env, log_path, port)
        self.channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)

    async def start(self, wait_s: float = 30.0) -> None:
        await self._spawn({"CHATMESH_GRPC_BIND": self.target, "CHATMESH_METRICS_PORT": "-1"})
        health = health_pb2_grpc.HealthStub(self.channel)
        async with asyncio.timeout(wait_s):
            while True:
                self.check_alive()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.stop()
        await self.channel.close(None)


class GatewayProcess(ServiceProcess):
    """`python -m gateway_ws`; ready when its WebSocket port accepts connections."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__("gateway_ws", env, log_path, port)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    async def start(self, wait_s: float = 20.0) -> None:
        await self._spawn(
            {
                "CHATMESH_WS_HOST": "127.0.0.1",
                "CHATMESH_WS_PORT": str(self.port),
                "CHATMESH_WS_METRICS_PORT": "-1",
            }
        )
        async with asyncio.timeout(wait_s):
            while True:
                self.check_alive()
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return
