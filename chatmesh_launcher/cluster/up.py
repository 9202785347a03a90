"""`chatmesh cluster up`: every dependency and service as its own process on this machine.

Order: the dependencies (Cassandra, NATS, Redis, SeaweedFS) at once, then `chatmesh migrate`,
then the gRPC services (two chat replicas, presence, search, media, notify) at once, then two
gateways, then Envoy in front, which must see every upstream healthy. Each component is written
to the state file as soon as it runs, so a failure (or Ctrl-C) stops exactly what was started.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from chatmesh_launcher.dev_secrets import dev_secret

from .binaries import locate_binary
from .cassandra import CassandraServer, find_java, resolve_classpath
from .certs import make_tls
from .chatmesh_process import ChatmeshProcess, grpc_serving, http_ok
from .envoy import EnvoyProxy
from .liveness import pid_alive, start_ticks
from .nats import NatsServer
from .ports import free_port
from .redis import RedisServer
from .seaweedfs import SeaweedServer
from .server_process import ServerProcess
from .state import ClusterState, Component, load_state, save_state
from .stop import stop_components
from .topology import (
    GATEWAYS,
    GRPC_SERVICES,
    KEYSPACE,
    Dependencies,
    Secrets,
    gateway_env,
    migrate_env,
    serve_name,
    service_envs,
)

HOST = "127.0.0.1"
# Services wait this long for readiness: they import a lot and share two cores with the rest.
SERVICE_WAIT_S = 60.0


_T = TypeVar("_T")


class ClusterError(RuntimeError):
    """`up` cannot go on; the message is the one line to show."""


@dataclass(frozen=True)
class Binaries:
    """Every executable the cluster runs, found before anything starts."""

    nats: str
    redis: str
    weed: str
    envoy: str


def find_binaries() -> Binaries:
    """Raises MissingBinaryError (or CassandraUnavailable) naming how to install what is missing.

    Java and the Cassandra jars are checked here too, so nothing starts when one is missing.
    """
    binaries = Binaries(
        nats=locate_binary("nats-server"),
        redis=locate_binary("redis-server"),
        weed=locate_binary("weed"),
        envoy=locate_binary("envoy"),
    )
    find_java()
    resolve_classpath()
    return binaries


class _Progress:
    """One line per component as it becomes ready, with the time since `up` began."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._began = time.monotonic()
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self._began:6.1f}s] {text}", file=self._out, flush=True)

    def ready(self, name: str, address: str, began: float) -> None:
        self.line(f"{name:<11} ready on {address} (took {time.monotonic() - began:.1f}s)")


class _Recorder:
    """The state so far; saved after every change (threads start components at once).

    Once closed (`up` failed or was interrupted) a component that a thread still finishes
    starting is stopped at once instead, so nothing outlives the failed `up`.
    """

    def __init__(self, state: ClusterState) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self.state = state
        save_state(state)

    def close(self) -> ClusterState:
        with self._lock:
            self._closed = True
            return self.state

    def note(self, key: str, value: str) -> None:
        with self._lock:
            self.state = replace(self.state, notes={**self.state.notes, key: value})
            save_state(self.state)

    def edge(self, grpc_target: str, ws_url: str) -> None:
        with self._lock:
            self.state = replace(self.state, envoy_grpc=grpc_target, envoy_ws=ws_url)
            save_state(self.state)

    def add(self, component: Component) -> None:
        with self._lock:
            self.state = self.state.with_component(component)
            save_state(self.state)
            closed = self._closed
        if closed:
            stop_components([component])


# weed lingers for many seconds after SIGTERM with its data already flushed: do not wait long.
_GRACE_S = {"seaweedfs": 3.0}


def _component(
    name: str, pid: int, address: str, log: Path, probe: str = "tcp", url: str = ""
) -> Component:
    grace_s = _GRACE_S.get(name, 20.0)
    return Component(name, pid, address, str(log), probe, url, start_ticks(pid), grace_s)


class _Launch:
    """Starts each component and records it; the environment every service shares."""

    def __init__(
        self,
        directory: Path,
        binaries: Binaries,
        progress: _Progress,
        envoy_settings: dict[str, Any] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.envoy_settings = envoy_settings or {}
        self.settings = dict(settings or {})
        self.binaries = binaries
        self.progress = progress
        self.recorder = _Recorder(ClusterState(directory=str(directory)))
        # Files in the directory, so `chatmesh token USER --data-dir DIR` signs accepted tokens.
        self.secrets = Secrets(
            jwt=dev_secret(directory, {}, "CHATMESH_JWT_SECRET", "jwt-secret"),
            service=dev_secret(directory, {}, "CHATMESH_SERVICE_SECRET", "service-secret"),
        )
        self.targets: dict[str, str] = {}
        self.workers: list[threading.Thread] = []
        self.cassandra: CassandraServer | None = None
        self.nats: NatsServer | None = None
        self.redis: RedisServer | None = None
        self.seaweed: SeaweedServer | None = None

    def all_at_once(self, steps: list[Callable[[], None]]) -> None:
        """Runs the steps in threads and waits for all; the first failure is raised after all
        end (so every process a step started is recorded before anything is stopped)."""
        errors: list[BaseException] = []

        def run(step: Callable[[], None]) -> None:
            try:
                step()
            except BaseException as exc:
                errors.append(exc)

        # Daemon threads: an interrupted `up` must not wait at exit for a start it abandoned.
        threads = [threading.Thread(target=run, args=(step,), daemon=True) for step in steps]
        self.workers.extend(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def abandon(self) -> None:
        """After a failure or an interrupt: stops what runs, kills what is still starting."""
        stop_components(self.recorder.close().components)
        # A start still waiting for readiness ends once its process is gone (a retry on a new
        # port may spawn another: kill again until every step has ended).
        deadline = time.monotonic() + 30.0
        while any(t.is_alive() for t in self.workers) and time.monotonic() < deadline:
            _kill_children()
            time.sleep(0.2)
        _kill_children()

    # -- dependencies ------------------------------------------------------------------------

    def start_server(self, server: ServerProcess, label: str) -> None:
        began = time.monotonic()
        server.detached = True
        server.start()
        assert server.pid is not None
        address = f"{server.host}:{server.port}"
        self.recorder.add(_component(label, server.pid, address, server.log_path))
        if isinstance(server, SeaweedServer):
            self.recorder.note("sockets", " ".join(_seaweed_sockets(server)))
        self.progress.ready(label, address, began)

    def start_cassandra(self) -> None:
        began = time.monotonic()
        server = CassandraServer(work_dir=self.directory / "cassandra", stop_at_exit=False)
        server.start()  # stops the node itself on a failure, keeping its log
        assert server.pid is not None and server.log_file is not None
        self.cassandra = server
        address = f"{server.host}:{server.port}"
        self.recorder.add(_component("cassandra", server.pid, address, server.log_file))
        self.progress.ready("cassandra", address, began)

    def start_dependencies(self) -> None:
        d = self.directory
        self.nats = NatsServer(self.binaries.nats, d / "nats")
        self.redis = RedisServer(self.binaries.redis, d / "redis")
        self.seaweed = SeaweedServer(self.binaries.weed, d / "seaweedfs")
        self.all_at_once(
            [
                self.start_cassandra,
                lambda: self.start_server(_known(self.nats), "nats"),
                lambda: self.start_server(_known(self.redis), "redis"),
                lambda: self.start_server(_known(self.seaweed), "seaweedfs"),
            ]
        )

    # -- chatmesh ----------------------------------------------------------------------------

    def dependencies(self) -> Dependencies:
        cassandra, seaweed = _known(self.cassandra), _known(self.seaweed)
        access_key, secret_key = seaweed.credentials
        return Dependencies(
            nats_url=_known(self.nats).url,
            redis_url=_known(self.redis).url,
            cql_host=cassandra.host,
            cql_port=cassandra.port,
            cql_datacenter=cassandra.datacenter,
            s3_url=seaweed.url,
            s3_region=seaweed.region,
            s3_access_key=access_key,
            s3_secret_key=secret_key,
        )

    def migrate(self) -> None:
        began = time.monotonic()
        env = migrate_env(self.dependencies(), self.secrets)
        log = self.directory / "logs" / "migrate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "chatmesh_launcher", "migrate"],
                env=ChatmeshProcess(["migrate"], env, log, lambda: True).child_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise ClusterError(f"chatmesh migrate failed (exit {result.returncode}):\n{tail}")
        self.progress.line(f"{'migrate':<11} keyspace {KEYSPACE} ({time.monotonic() - began:.1f}s)")

    def start_service(self, name: str, command: list[str], env: Mapping[str, str]) -> None:
        """`chatmesh serve ...` on its target (gRPC) or port (gateway), recorded once ready."""
        began = time.monotonic()
        address = self.targets[name]
        log = self.directory / "logs" / f"{name}.log"
        gateway = command[-1] == "gateway"
        url = f"http://{address}/healthz" if gateway else ""
        ready = http_ok(url) if gateway else grpc_serving(address)
        process = ChatmeshProcess(command, {**env, **self.settings}, log, ready)
        process.detached = True
        try:
            process.start(SERVICE_WAIT_S)
        except BaseException:
            process.kill()
            raise
        probe = "http" if gateway else "grpc"
        self.recorder.add(_component(name, process.pid, address, log, probe, url))
        self.progress.ready(name, address, began)

    def start_services(self) -> None:
        for name in GRPC_SERVICES:
            self.targets[name] = f"{HOST}:{free_port(HOST)}"
        envs = service_envs(self.directory, self.dependencies(), self.secrets, self.targets)
        (self.directory / "search").mkdir(parents=True, exist_ok=True)
        self.all_at_once(
            [
                functools.partial(self.start_service, name, ["serve", serve_name(name)], env)
                for name, env in envs.items()
            ]
        )

    def start_gateways(self) -> None:
        for name in GATEWAYS:
            self.targets[name] = f"{HOST}:{free_port(HOST)}"
        deps = self.dependencies()
        self.all_at_once(
            [
                functools.partial(
                    self.start_service,
                    name,
                    ["serve", "gateway"],
                    gateway_env(index, deps, self.secrets, self.targets),
                )
                for index, name in enumerate(GATEWAYS, start=1)
            ]
        )

    def start_envoy(self) -> None:
        began = time.monotonic()
        t = self.targets
        envoy = EnvoyProxy(
            self.binaries.envoy,
            self.directory / "envoy",
            make_tls(self.directory / "envoy" / "tls"),
            chat=[t["chat-1"], t["chat-2"]],
            presence=[t["presence"]],
            search=[t["search"]],
            media=[t["media"]],
            gateway=[t["gateway-1"], t["gateway-2"]],
            **self.envoy_settings,
        )
        envoy.detached = True
        envoy.start()
        assert envoy.pid is not None
        component = _component(
            "envoy",
            envoy.pid,
            envoy.plaintext_target,
            envoy.log_path,
            "http",
            f"{envoy.admin_url}/ready",
        )
        self.recorder.add(component)
        for cluster, count in (("chat", 2), ("gateway", 2), ("presence", 1), ("media", 1)):
            envoy.wait_healthy(cluster, count, timeout_s=30.0)
        self.recorder.edge(envoy.plaintext_target, envoy.ws_url)
        self.recorder.note("envoy_tls", envoy.tls_target)
        self.recorder.note("envoy_admin", envoy.admin_url)
        self.progress.line(
            f"{'envoy':<11} ready on {envoy.plaintext_target}, every upstream healthy"
            f" ({time.monotonic() - began:.1f}s)"
        )


def _seaweed_sockets(server: SeaweedServer) -> list[str]:
    """The Unix sockets weed makes in /tmp, named by gRPC port (no flag moves them), which it
    leaves behind when killed; `down` removes them."""
    kinds = ("master", "volume", "filer", "s3")
    return [f"/tmp/seaweedfs-{kind}-grpc-{server.ports[kind + '.grpc']}.sock" for kind in kinds]


def _known(value: _T | None) -> _T:
    assert value is not None, "started in an earlier step"
    return value


def _kill_children() -> None:
    """SIGKILL to every live child of this process (and its group, when it leads one)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[1]) == me and fields[0] != "Z":
            pid = int(entry.name)
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


def prepare_directory(directory: Path) -> None:
    """Refuses a directory whose cluster still runs; empties one whose cluster stopped."""
    state = load_state(directory)
    if state is not None:
        running = [c for c in state.components if pid_alive(c)]
        if running:
            raise ClusterError(
                f"a cluster already runs from {directory} ({len(running)} processes):"
                f" `chatmesh cluster down --dir {directory}` first"
            )
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


def cluster_up(
    directory: Path,
    binaries: Binaries,
    out: TextIO,
    *,
    jwt_secret: str = "",
    envoy_settings: Mapping[str, Any] | None = None,
    settings: Mapping[str, str] | None = None,
) -> ClusterState:
    """Starts the whole cluster; on any failure stops what it started and raises.

    `jwt_secret` signs user tokens instead of a fresh one (the benchmarks' load generators sign
    their own); `envoy_settings` override envoy/render.py's (e.g. a benchmark's client rate);
    `settings` go on top of every chatmesh process's environment (e.g. a benchmark lifting the
    gateway's per-user send limit).
    """
    prepare_directory(directory)
    if jwt_secret:
        (directory / "jwt-secret").write_text(jwt_secret + "\n")
    progress = _Progress(out)
    launch = _Launch(directory, binaries, progress, dict(envoy_settings or {}), settings)
    try:
        launch.start_dependencies()
        launch.migrate()
        launch.start_services()
        launch.start_gateways()
        launch.start_envoy()
    except BaseException:
        launch.abandon()
        raise
    return launch.recorder.state
