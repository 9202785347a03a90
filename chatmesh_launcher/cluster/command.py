"""`chatmesh cluster up|down|status`: the command line of the local cluster.

The heavy imports (drivers, the servers) wait until a cluster command runs, so the rest of the
`chatmesh` command works without the cluster extra.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

DEFAULT_DIR = ".cluster"
# A missing executable or jar: the same exit status as a configuration error.
MISSING_EXIT = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="a local cluster: every dependency and service as its own process, behind Envoy",
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    for name, text in (
        ("up", "start Cassandra, NATS, Redis, SeaweedFS, the services and Envoy; print the table"),
        ("down", "stop what `up` started (SIGTERM, then SIGKILL); data and logs stay"),
        ("status", "the table with each component's liveness (exit 1 unless all are up)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--dir",
            default=DEFAULT_DIR,
            help=f"state, data and logs of the cluster (default: {DEFAULT_DIR} in the cwd)",
        )


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir).absolute()
    if args.cluster_command == "up":
        return _up(directory)
    if args.cluster_command == "down":
        return _down(directory)
    return _status(directory)


def _up(directory: Path) -> int:
    from .binaries import MissingBinaryError
    from .cassandra import CassandraStartError, CassandraUnavailable
    from .server_process import ServerStartError
    from .table import components_table, connect_hints
    from .up import ClusterError, cluster_up, find_binaries

    try:
        binaries = find_binaries()
    except (MissingBinaryError, CassandraUnavailable) as exc:
        print(f"chatmesh: cluster up: {exc}", file=sys.stderr)
        return MISSING_EXIT
    began = time.monotonic()
    print(f"starting a cluster in {directory}", flush=True)
    # SIGTERM stops a starting cluster like Ctrl-C: what started so far is stopped again.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        state = cluster_up(directory, binaries, sys.stdout)
    except (ClusterError, ServerStartError, CassandraStartError, TimeoutError, RuntimeError) as exc:
        print(f"chatmesh: cluster up: {exc}", file=sys.stderr)
        print(f"stopped what had started; logs are in {directory}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chatmesh: cluster up: interrupted; stopped what had started", file=sys.stderr)
        return 130
    cwd = Path.cwd()
    print(f"\ncluster up in {time.monotonic() - began:.1f}s\n")
    print(components_table(state, cwd))
    print(connect_hints(state, cwd), end="", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _load(directory: Path, command: str) -> object:
    from .state import load_state

    try:
        return load_state(directory)
    except ValueError as exc:
        print(f"chatmesh: cluster {command}: {exc}", file=sys.stderr)
        return exc


def _down(directory: Path) -> int:
    from .state import ClusterState
    from .stop import stop_components

    state = _load(directory, "down")
    if isinstance(state, ValueError):
        return MISSING_EXIT
    if not isinstance(state, ClusterState):
        print(f"no cluster was started in {directory}")
        return 0
    began = time.monotonic()

    def report(component: object, how: str) -> None:
        name = getattr(component, "name", "?")
        print(f"[{time.monotonic() - began:6.1f}s] {name:<11} {how}", flush=True)

    left = stop_components(state.components, report=report)
    for path in state.notes.get("sockets", "").split():
        Path(path).unlink(missing_ok=True)
    if left:
        names = ", ".join(f"{c.name} (pid {c.pid})" for c in left)
        print(f"chatmesh: cluster down: still running after SIGKILL: {names}", file=sys.stderr)
        return 1
    print(f"cluster down; data and logs stay in {directory}")
    return 0


def _status(directory: Path) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from .liveness import liveness
    from .state import ClusterState
    from .table import components_table, connect_hints

    state = _load(directory, "status")
    if isinstance(state, ValueError):
        return MISSING_EXIT
    if not isinstance(state, ClusterState):
        print(f"no cluster was started in {directory}")
        return 1
    with ThreadPoolExecutor(max_workers=max(1, len(state.components))) as pool:
        states = dict(
            zip(
                (c.name for c in state.components),
                pool.map(liveness, state.components),
                strict=True,
            )
        )
    cwd = Path.cwd()
    print(components_table(state, cwd, states))
    all_up = bool(states) and all(s == "up" for s in states.values())
    if all_up:
        print(connect_hints(state, cwd), end="")
    else:
        print(f"{sum(s == 'up' for s in states.values())} of {len(states)} components up")
    return 0 if all_up else 1
