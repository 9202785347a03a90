"""`--mode cluster`: the scenarios on the local cluster of `chatmesh cluster up`.

Every dependency and service is its own process (Cassandra for the CQL store, NATS JetStream,
Redis, SeaweedFS, two chat_service replicas, two gateways, presence, notify, media, search)
behind Envoy. Load generators connect through Envoy's WebSocket route, as apps would; the
scenario's setup calls (CreateConversation, seeding sends) go to chat-1 directly, since they are
not measured and Envoy's per-client rate limit is meant for them. The same `ClusterServer`
answers what the scenarios ask `chatmesh dev` (addresses, CPU, memory, a profile), summed over
the cluster's processes; `cpu_by_process` splits the CPU so a reader sees what saturates.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from bench.system import (
    SECRET,
    PySpy,
    proc_cpu_seconds,
    proc_rss_bytes,
    proc_thread_cpu_seconds,
)
from chatmesh_launcher.cluster.liveness import pid_alive
from chatmesh_launcher.cluster.state import ClusterState, Component
from chatmesh_launcher.cluster.stop import stop_components
from chatmesh_launcher.cluster.up import cluster_up, find_binaries

# The edge's per-client limit counts HTTP requests (a socket's upgrade is one); every load
# generator connects from 127.0.0.1, so the limit would measure the limiter.
BENCH_EDGE = {"client_per_second": 1_000_000, "client_burst": 1_000_000}
# The process py-spy samples with --profile: the replica the first gateway uses.
PROFILED = "chat-1"


class ClusterServer:
    """`chatmesh cluster up` in `directory`, until stop(); the scenarios' server."""

    def __init__(self, directory: Path, settings: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self._settings = dict(settings or {})
        self._state: ClusterState | None = None
        self._profiler = PySpy()

    def start(self) -> None:
        self._state = cluster_up(
            self.directory,
            find_binaries(),
            sys.stderr,
            jwt_secret=SECRET,
            envoy_settings=BENCH_EDGE,
            settings=self._settings,
        )

    def stop(self, grace_s: float = 20.0) -> None:
        self.stop_profile()
        if self._state is not None:
            stop_components(self._state.components)
            self._state = None

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise RuntimeError("the cluster is not running")
        return self._state

    def component(self, name: str) -> Component:
        for component in self.state.components:
            if component.name == name:
                return component
        raise KeyError(name)

    @property
    def ws_url(self) -> str:
        return self.state.envoy_ws

    @property
    def grpc_target(self) -> str:
        return self.component("chat-1").address

    @property
    def pid(self) -> int:
        return self.component(PROFILED).pid

    def _alive(self) -> list[Component]:
        return [c for c in self.state.components if pid_alive(c)]

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds of each running process of the cluster."""
        return {c.name: proc_cpu_seconds(c.pid) for c in self._alive()}

    def rss_by_process(self) -> dict[str, int]:
        return {c.name: proc_rss_bytes(c.pid) for c in self._alive()}

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_process().values())

    def rss_bytes(self) -> int:
        return sum(self.rss_by_process().values())

    def thread_cpu_seconds(self) -> dict[int, tuple[str, float]]:
        """chat-1's threads (the replica --profile samples)."""
        return proc_thread_cpu_seconds(self.pid)

    def start_profile(self, output: Path, fmt: str = "raw", rate_hz: int = 200) -> None:
        """Samples chat-1 until stop_profile()."""
        self._profiler.start(self.pid, output, fmt, rate_hz)

    def stop_profile(self) -> None:
        self._profiler.stop()
