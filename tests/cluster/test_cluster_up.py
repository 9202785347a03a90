"""`chatmesh cluster up` on this machine: every process starts, a message crosses gateways and
chat replicas, `status` shows all up, and `down` leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatmesh_common.auth import issue_token
from chatmesh_launcher.cluster.cassandra import CassandraUnavailable, find_java, resolve_classpath
from chatmesh_launcher.cluster.liveness import pid_alive
from chatmesh_launcher.cluster.state import ClusterState, load_state
from tests.gateway.client import GatewayClient
from tests.servers.binaries import require_binary, server_unavailable
from tests.servers.services import REPO

# Every server the local cluster runs, for each test that starts one.
CLUSTER_MARKS = [
    pytest.mark.cluster,
    pytest.mark.cql,
    pytest.mark.nats,
    pytest.mark.redis,
    pytest.mark.s3,
    pytest.mark.envoy,
    pytest.mark.slow,
]
pytestmark = [*CLUSTER_MARKS, pytest.mark.timeout(300)]

UP_TIMEOUT_S = 200.0


def _chatmesh(*args: str, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = (str(REPO), str(REPO / "gen"), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "chatmesh_launcher", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGTERM first: an `up` still starting stops what it started before it exits.
        process.terminate()
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        err += f"\n(timed out after {timeout_s}s)"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _require_servers() -> None:
    """Every server the cluster runs: missing ones skip locally and fail in CI."""
    for name, marker in (
        ("nats-server", "nats"),
        ("redis-server", "redis"),
        ("weed", "s3"),
        ("envoy", "envoy"),
    ):
        require_binary(name, marker)
    try:
        find_java()
        resolve_classpath()
    except CassandraUnavailable as exc:
        server_unavailable(f"the CQL server cannot run: {exc}")


def _kill_left(state: ClusterState | None) -> None:
    """Safety net after `down`: nothing this test started may outlive it."""
    for component in state.components if state else ():
        if pid_alive(component):
            os.kill(component.pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterState]:
    """A cluster started by `chatmesh cluster up` in tmp_path (default dir .cluster)."""
    _require_servers()
    directory = tmp_path / ".cluster"
    try:
        up = _chatmesh("cluster", "up", cwd=tmp_path, timeout_s=UP_TIMEOUT_S)
        assert up.returncode == 0, f"stdout:\n{up.stdout}\nstderr:\n{up.stderr}"
        # One progress line per component, then the table and how to connect.
        for name in ("cassandra", "nats", "redis", "seaweedfs", "migrate", "envoy"):
            assert f"] {name} " in up.stdout, up.stdout
        assert "chatmesh token alice --data-dir .cluster" in up.stdout
        state = load_state(directory)
        assert state is not None
        yield state
    finally:
        try:
            _chatmesh("cluster", "down", cwd=tmp_path, timeout_s=90)
        finally:
            _kill_left(load_state(directory) if (directory / "state.json").exists() else None)


async def test_cluster_up_delivers_across_gateways_and_down_stops_everything(
    cluster: ClusterState, tmp_path: Path
) -> None:
    """A message sent through Envoy reaches the recipient's sockets on both gateways (each on
    its own chat replica), `status` says every component is up, and after `down` none of the
    recorded pids runs."""
    names = {c.name for c in cluster.components}
    assert names == {
        "cassandra", "nats", "redis", "seaweedfs", "chat-1", "chat-2", "presence", "search",
        "media", "notify", "gateway-1", "gateway-2", "envoy",
    }  # fmt: skip
    status = await asyncio.to_thread(_chatmesh, "cluster", "status", cwd=tmp_path, timeout_s=60)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1 : 1 + len(names)]]
    assert {row[0]: row[1] for row in rows} == dict.fromkeys(names, "up")

    secret = (Path(cluster.directory) / "jwt-secret").read_text().strip()
    gateways = {c.name: c.address for c in cluster.components if c.name.startswith("gateway")}
    alice = await GatewayClient.connect(cluster.envoy_ws, issue_token(secret, "alice"))
    bobs = [
        await GatewayClient.connect(f"ws://{gateways[name]}/v1/ws", issue_token(secret, "bob"))
        for name in ("gateway-1", "gateway-2")
    ]
    try:
        cid = await alice.create_group("bob")
        await alice.call(
            "send_message", conversation_id=cid, client_msg_id="m1", body="across the cluster"
        )
        for bob in bobs:
            async with asyncio.timeout(30):
                while True:
                    event = await bob.next_event(30)
                    if event.WhichOneof("payload") == "message_created":
                        break
            assert event.conversation_id == cid
            assert event.message_created.message.body == "across the cluster"
    finally:
        for client in (alice, *bobs):
            await client.close()

    down = await asyncio.to_thread(_chatmesh, "cluster", "down", cwd=tmp_path, timeout_s=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [c.name for c in cluster.components if pid_alive(c)] == []
