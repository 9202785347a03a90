"""Acknowledged sends per second and ack latency through gRPC on the Scylla (CQL) store.

    python -m bench.scylla_send [--replicas 1|2] [--senders 40] [--conversations 4]
        [--seconds 10] [--contact-points HOST[,HOST]] [--port 9042] [--dc datacenter1]
        [--keyspace KS] [--profile] [--stages]

Without `--contact-points` it starts a throwaway single-node Cassandra 5
(tests/servers/cassandra.py, the stand-in for ScyllaDB the tests use). It then runs
`chatmesh migrate` on a fresh keyspace (SimpleStrategy RF 1), starts `--replicas`
`python -m chat_service` processes on it, creates `--conversations` groups and runs `--senders`
concurrent senders (sender i talks to replica i % replicas and sends into conversation
i % conversations) as fast as their acks return.

Prints the command, sends per second, ack latency p50/p90/p99, and the CPU seconds per 1000 sends
spent by the CQL server, the replicas and this client (where the cost goes on one box), and the
CQL requests per acked send (from Cassandra's `system_views.clients`; n/a on ScyllaDB).

`--profile` samples replica 0 with py-spy for the run and prints where its CPU goes.
`--stages` also runs the same load on a ScyllaChatStore in this process (no gRPC) with timing of
each stage of an append: membership read, outbox index write, the LWT, materialization.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (from /proc; 0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


@contextlib.contextmanager
def _cql_server(args: argparse.Namespace) -> Iterator[tuple[list[str], int, str, int | None]]:
    """(contact points, port, dc, server pid or None): the given cluster or a throwaway node."""
    if args.contact_points:
        yield args.contact_points.split(","), args.port, args.dc, args.server_pid
        return
    from tests.servers.cassandra import CassandraServer

    server = CassandraServer()
    started = time.perf_counter()
    server.start()
    print(f"# started Cassandra {server.release_version} in {time.perf_counter() - started:.1f}s")
    try:
        yield [server.host], server.port, server.datacenter, server.pid
    finally:
        server.stop()


def _env(points: list[str], port: int, dc: str, keyspace: str, data_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHATMESH_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": ",".join(points),
        "CHATMESH_SCYLLA_PORT": str(port),
        "CHATMESH_SCYLLA_DC": dc,
        "CHATMESH_SCYLLA_KEYSPACE": keyspace,
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_DATA_DIR": data_dir,
        "CHATMESH_METRICS_PORT": "-1",
        # A bench replica has no load balancer to drain: stop at once.
        "CHATMESH_DRAIN_S": "0",
        "CHATMESH_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


async def _wait_serving(target: str, process: subprocess.Popen[bytes], wait_s: float) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"chat_service exited with {process.returncode}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                response = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.05)
    raise SystemExit(f"chat_service on {target} not serving after {wait_s}s")


class _Profiler:
    """py-spy sampling one process into collapsed stacks; summarized by frame."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process = subprocess.Popen(
            [
                spy,
                "record",
                "--nonblocking",
                "--full-filenames",
                "-r",
                "200",
                "-d",
                str(int(seconds)),
                "-p",
                str(pid),
                "-f",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def summary(self, top: int = 15) -> str:
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return "py-spy did not finish"
        if not self.out.exists():
            return f"py-spy failed: {err.decode(errors='replace')[-500:]}"
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[_area(frames[-1])] += n
            for area in {_area(f) for f in frames}:
                inclusive[area] += n
        if not total:
            return "py-spy: no samples"
        lines = [f"py-spy samples of replica 0: {total} (idle samples excluded)"]
        lines.append(
            "  own time by area: "
            + ", ".join(f"{a} {100 * n / total:.0f}%" for a, n in own.most_common(top))
        )
        return "\n".join(lines)


def _area(frame: str) -> str:
    """A sampled frame `func (path/to/file.py:line)` reduced to the library or module it is in."""
    func, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker, name in (
        ("cassandra/", "cassandra-driver"),
        ("grpc/", "grpc"),
        ("google/protobuf", "protobuf"),
        ("json/", "json"),
        ("uvloop", "uvloop"),
        ("asyncio/", "asyncio"),
        ("jwt/", "jwt"),
    ):
        if marker in path:
            return name
    for package in ("chat_service/store/", "chat_service/", "chatmesh_common/"):
        if package in path:
            return package + Path(path).stem
    return Path(path).name or func


class _RequestCounter:
    """Sums `request_count` of every client connection the CQL server has
    (`system_views.clients`, Cassandra 4+): CQL requests (statements, batches, prepares,
    heartbeats) sent by all clients, i.e. the replicas during a run."""

    def __init__(self, points: list[str], port: int) -> None:
        from cassandra.cluster import Cluster

        self._cluster = Cluster(points, port=port, protocol_version=4)
        self._session = self._cluster.connect()

    def total(self) -> int | None:
        try:
            rows = self._session.execute("SELECT request_count FROM system_views.clients")
        except Exception:
            return None  # not Cassandra 4+ (ScyllaDB has no such view)
        return sum(r.request_count or 0 for r in rows)

    def close(self) -> None:
        self._cluster.shutdown()


async def _load(
    targets: list[str],
    senders: int,
    conversations: int,
    seconds: float,
    counter: _RequestCounter | None = None,
) -> tuple[list[float], float, int | None]:
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [chat_service_pb2_grpc.ChatServiceStub(c) for c in channels]
    users = [f"u{i:04d}" for i in range(senders)]
    tokens = {u: auth_metadata(issue_token(SECRET, u)) for u in users}
    conversation_ids = []
    for c in range(conversations):
        members = [u for i, u in enumerate(users) if i % conversations == c]
        created = await stubs[0].CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_GROUP, title=f"g{c}", member_ids=members
            ),
            metadata=tokens[members[0]],
        )
        conversation_ids.append(created.conversation.conversation.conversation_id)
    latencies: list[float] = []
    requests_before = await asyncio.to_thread(counter.total) if counter else None
    deadline = time.perf_counter() + seconds

    async def sender(index: int) -> None:
        user = users[index]
        stub = stubs[index % len(stubs)]
        cid = conversation_ids[index % conversations]
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await stub.SendMessage(
                pb.SendMessageRequest(
                    conversation_id=cid, client_msg_id=f"{user}-{n}", body="hello world " * 8
                ),
                metadata=tokens[user],
            )
            latencies.append(time.perf_counter() - started)
            n += 1

    began = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    elapsed = time.perf_counter() - began
    await asyncio.sleep(0.5)  # the relay's last clears
    requests_after = await asyncio.to_thread(counter.total) if counter else None
    requests = (
        requests_after - requests_before - 1
        if requests_before is not None and requests_after is not None
        else None
    )
    for channel in channels:
        await channel.close(None)
    return latencies, elapsed, requests


async def _stages(
    points: list[str],
    port: int,
    dc: str,
    keyspace: str,
    senders: int,
    conversations: int,
    seconds: float,
) -> str:
    """The same load on an in-process store, with the time spent in each stage of an append."""
    from chat_service.store.base import Kind, NewConversation, NewMessage, Role
    from chat_service.store.scylla import ScyllaChatStore

    spent: defaultdict[str, list[float]] = defaultdict(list)

    def timed(label: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                spent[label].append(time.perf_counter() - started)

        return wrapper

    def time_stages(store: ScyllaChatStore) -> None:
        """Wraps the stages of an append (on the store's parts) to record the time spent."""
        from cassandra.query import BatchStatement, BatchType

        session, rounds = store._session, store._rounds
        run, execute, advance = session.run, session.execute, rounds._advance

        async def timed_run(name: str, params: Sequence[Any] = (), *, serial: bool = False) -> Any:
            label = f"stmt {name}{' (serial)' if serial else ''}"
            return await timed(label, run)(name, params, serial=serial)

        async def timed_execute(statement: Any) -> list[Any]:
            if not isinstance(statement, BatchStatement):
                return await execute(statement)
            lwt = statement.batch_type == BatchType.LOGGED
            label = "3 LWT (conditional batch)" if lwt else "unlogged batch"
            result: list[Any] = await timed(label, execute)(statement)
            return result

        async def timed_advance(
            head: Any, events: Any, delta: int, keys: Any, *, indexed_at: int = -1
        ) -> Any:
            spent["round size"].append(float(len(events)))
            label = "2-5 advance (outbox+LWT+materialize)"
            return await timed(label, advance)(head, events, delta, keys, indexed_at=indexed_at)

        # Instance attributes shadow the methods: the parts call each other through `self`.
        wrappers: list[tuple[object, str, Callable[..., Awaitable[Any]]]] = [
            (session, "run", timed_run),
            (session, "execute", timed_execute),
            (rounds, "_advance", timed_advance),
            (
                rounds,
                "_refuse_non_members",
                timed("1 membership check (+ outbox index write)", rounds._refuse_non_members),
            ),
            (rounds, "_materialize", timed("4-5 materialize", rounds._materialize)),
        ]
        for owner, name, wrapper in wrappers:
            setattr(owner, name, wrapper)

    store = ScyllaChatStore(
        points,
        port=port,
        local_dc=dc,
        keyspace=keyspace,
        replication={"class": "SimpleStrategy", "replication_factor": 1},
    )
    time_stages(store)
    await store.open()
    users = [f"s{i:04d}" for i in range(senders)]
    cids = []
    for c in range(conversations):
        cid = uuid.uuid4().hex
        members = [(u, Role.MEMBER) for i, u in enumerate(users) if i % conversations == c]
        await store.create_conversation(
            NewConversation(cid, Kind.GROUP, "g", members[0][0], time.time(), members)
        )
        cids.append(cid)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    cpu_before = time.process_time()

    async def sender(index: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            started = time.perf_counter()
            await store.append_message(
                NewMessage(
                    conversation_id=cids[index % conversations],
                    message_id=uuid.uuid4().hex,
                    sender_id=users[index],
                    client_msg_id=f"{index}-{n}",
                    created_at=time.time(),
                    kind=0,
                    body="hello world " * 8,
                    attachments=(),
                    reply_to_seq=0,
                )
            )
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_before
    await store.close()
    lines = [
        f"in-process store: {len(latencies) / elapsed:.0f} appends/s, append p50"
        f" {_percentile(latencies, 0.5) * 1e3:.1f} ms p99 {_percentile(latencies, 0.99) * 1e3:.1f}"
        f" ms, process CPU {1e3 * cpu / max(1, len(latencies)):.2f} ms/append",
        f"  {'stage':<42} {'calls':>7} {'mean ms':>8} {'p99 ms':>8}",
    ]
    for name in sorted(spent):
        values = spent[name]
        if name == "round size":
            lines.append(
                f"  {'appends per round (mean)':<42} {len(values):>7}"
                f" {statistics.fmean(values):>8.1f}"
            )
            continue
        lines.append(
            f"  {name:<42} {len(values):>7} {statistics.fmean(values) * 1e3:>8.2f}"
            f" {_percentile(values, 0.99) * 1e3:>8.2f}"
        )
    return "\n".join(lines)


def _migrate(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "chatmesh_launcher", "migrate"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    print("$ " + shlex.join([Path(sys.executable).name, "-m", "bench.scylla_send", *sys.argv[1:]]))
    with _cql_server(args) as (points, port, dc, server_pid), tempfile.TemporaryDirectory() as tmp:
        keyspace = args.keyspace or f"bench_{uuid.uuid4().hex[:10]}"
        env = _env(points, port, dc, keyspace, tmp)
        print(f"# chatmesh migrate on {keyspace}: {_migrate(env):.1f}s")
        replicas: list[subprocess.Popen[bytes]] = []
        targets = []
        try:
            for _ in range(args.replicas):
                grpc_port = _free_port()
                replicas.append(
                    subprocess.Popen(  # noqa: ASYNC220 (setup, before the measured part)
                        [sys.executable, "-m", "chat_service"],
                        env={**env, "CHATMESH_GRPC_BIND": f"127.0.0.1:{grpc_port}"},
                        cwd=REPO,
                        stdin=subprocess.DEVNULL,
                    )
                )
                targets.append(f"127.0.0.1:{grpc_port}")
            for target, process in zip(targets, replicas, strict=True):
                await _wait_serving(target, process, 60)
            profiler = (
                _Profiler(replicas[0].pid, args.seconds + 1, Path(tmp) / "replica0.txt")
                if args.profile
                else None
            )
            pids = [p.pid for p in replicas]
            cpu_before = {pid: _cpu_seconds(pid) for pid in [*pids, server_pid or 0]}
            self_before = time.process_time()
            counter = _RequestCounter(points, port)
            try:
                latencies, elapsed, requests = await _load(
                    targets, args.senders, args.conversations, args.seconds, counter
                )
            finally:
                counter.close()
            self_cpu = time.process_time() - self_before
            cpu = {pid: _cpu_seconds(pid) - before for pid, before in cpu_before.items()}
        finally:
            for process in replicas:
                process.send_signal(signal.SIGTERM)
            for process in replicas:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        n = len(latencies)
        per_k = 1000 / max(1, n)
        print(
            f"replicas={args.replicas} senders={args.senders} conversations={args.conversations}"
            f" seconds={elapsed:.1f}\n"
            f"  acked sends       {n}\n"
            f"  sends/s           {n / elapsed:.0f}\n"
            f"  ack latency ms    p50 {_percentile(latencies, 0.5) * 1e3:.1f}"
            f"  p90 {_percentile(latencies, 0.9) * 1e3:.1f}"
            f"  p99 {_percentile(latencies, 0.99) * 1e3:.1f}"
            f"  max {max(latencies) * 1e3:.1f}\n"
            f"  CPU s per 1000 sends: CQL server "
            + (f"{cpu[server_pid] * per_k:.2f}" if server_pid else "n/a")
            + f", replicas {sum(cpu[p] for p in pids) * per_k:.2f}"
            f", bench client {self_cpu * per_k:.2f}"
            f" ({os.cpu_count()} CPUs; wall {elapsed:.1f}s)\n"
            "  CQL requests per send (all clients, relay sweeps included) "
            + (f"{requests / max(1, n):.1f}" if requests is not None else "n/a")
        )
        if profiler is not None:
            print(profiler.summary())
        if args.stages:
            print(
                await _stages(
                    points, port, dc, keyspace, args.senders, args.conversations, args.seconds
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1)
    parser.add_argument("--senders", type=int, default=40)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--contact-points", default="", help="use this cluster (comma-separated)")
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--dc", default="datacenter1")
    parser.add_argument("--server-pid", type=int, default=None, help="CQL server pid, for CPU")
    parser.add_argument("--keyspace", default="", help="default: a fresh bench_<random>")
    parser.add_argument("--profile", action="store_true", help="py-spy replica 0 during the run")
    parser.add_argument("--stages", action="store_true", help="per-stage timing, in-process")
    args = parser.parse_args()
    if args.senders < args.conversations:
        parser.error("--senders must be at least --conversations")
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
