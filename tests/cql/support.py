"""Helpers for the CQL end-to-end tests: `chatmesh migrate` and `python -m chat_service` as real
processes against a keyspace of the session's CQL server (Cassandra standing in for ScyllaDB)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chat.support import SECRET, free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers.cassandra import CassandraServer

REPO = Path(__file__).resolve().parents[2]


def fresh_keyspace(prefix: str = "cqlt") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def scylla_env(server: CassandraServer, keyspace: str, data_dir: Path) -> dict[str, str]:
    """The environment of a replica (or `chatmesh migrate`) on `keyspace`."""
    return {
        **os.environ,
        "CHATMESH_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": server.host,
        "CHATMESH_SCYLLA_PORT": str(server.port),
        "CHATMESH_SCYLLA_DC": server.datacenter,
        "CHATMESH_SCYLLA_KEYSPACE": keyspace,
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
        "CHATMESH_SCYLLA_MIGRATE_ON_OPEN": "0",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_DATA_DIR": str(data_dir),
        "CHATMESH_METRICS_PORT": "-1",
        "CHATMESH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


@dataclass(frozen=True)
class MigrateResult:
    returncode: int
    output: str


async def run_migrate(env: dict[str, str], wait_s: float = 60.0) -> MigrateResult:
    """`chatmesh migrate` (as `python -m chatmesh_common.cli migrate`) with this environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatmesh_common.cli",
        "migrate",
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(wait_s):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return MigrateResult(process.returncode, out.decode(errors="replace"))


class Replica:
    """`python -m chat_service` on the Scylla store; `.channel` is a ChannelSource for Client."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        assert self._channel is not None, "the replica is not running"
        return self._channel

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        port = free_port()
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chat_service",
                env={**self.env, "CHATMESH_GRPC_BIND": f"127.0.0.1:{port}"},
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await self._wait_serving()

    async def _wait_serving(self, wait_s: float = 30.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        async with asyncio.timeout(wait_s):
            while True:
                assert self.process is not None
                if self.process.returncode is not None:
                    pytest.fail(
                        f"chat_service exited with {self.process.returncode}:\n"
                        + self.log_path.read_text(errors="replace")
                    )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    response = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL; the channel stays open so calls in flight fail (UNAVAILABLE)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await self.process.wait()
            except TimeoutError:
                self.process.send_signal(signal.SIGKILL)
                await self.process.wait()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


@contextlib.contextmanager
def cql_session(server: CassandraServer) -> Iterator[Any]:
    """A plain driver session on the server (blocking; for checks from the test)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=server.datacenter)
    )
    cluster = Cluster(
        [server.host],
        port=server.port,
        protocol_version=4,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()
