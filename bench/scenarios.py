"""The scenarios (media's is in bench/media.py, search's in bench/search.py). Each starts
`chatmesh dev`, sets up through gRPC, drives load through the WebSocket edge from worker
processes, and returns a `Result` (search runs in-process, see its module).

Sizes come from the command line; `--smoke` shrinks every one of them to run in seconds (CI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cluster import ClusterServer
from bench.loadgen import Device, Pool, floats
from bench.media import scenario_media
from bench.push import scenario_push
from bench.report import Result, merge_counters, percentile, summarize_profile
from bench.search import scenario_search
from bench.soak import soak_windows
from bench.system import Admin, BenchServer, DevServer, raise_nofile, seed_history

MS = 1000.0


class Run:
    """One scenario run: the server, the admin client, the workers, and the CPU bookkeeping."""

    def __init__(self, args: argparse.Namespace, server: BenchServer, admin: Admin) -> None:
        self.args = args
        self.server = server
        self.admin = admin
        self.pool: Pool | None = None
        self._cpu_mark = 0.0
        self._wall_mark = 0.0
        self._process_marks: dict[str, float] = {}
        self._threads_mark: dict[int, tuple[str, float]] = {}
        # CPU seconds of the last window (cpu_split, thread_split): for CPU per send.
        self.server_cpu_s = 0.0
        self.main_thread_cpu_s = 0.0
        # On a cluster: CPU seconds of the last window by tier (replicas summed), for the scale
        # model's cost per send of each tier.
        self.tier_cpu_s: dict[str, float] = {}

    def start_pool(self, devices: Sequence[Device], workers: int, nofile: int) -> Pool:
        """Splits devices into `workers` contiguous blocks, one process each, speaking the
        frames of `--binary` (binary protobuf unless the scenario defaults to JSON)."""
        binary = bool(getattr(self.args, "binary", True))
        blocks: list[list[Device]] = [[] for _ in range(workers)]
        per = -(-len(devices) // workers)
        for i, device in enumerate(devices):
            blocks[i // per].append(device)
        self.pool = Pool(self.server.ws_url, blocks, nofile, binary)
        return self.pool

    def mark(self) -> None:
        self._threads_mark = self.server.thread_cpu_seconds()
        self._cpu_mark = self.server.cpu_seconds()
        if isinstance(self.server, ClusterServer):
            self._process_marks = self.server.cpu_by_process()
        self._wall_mark = time.perf_counter()

    def cpu_per_send(self, sends: int) -> dict[str, Any]:
        """Server CPU of the last window per acknowledged send (its deliveries included), in
        ms: unlike latency, it hardly moves when other work shares the machine. On a cluster
        also per tier, busiest first."""
        per = 1000 / max(1, sends)
        costs: dict[str, Any] = {
            "server_cpu_ms_per_send": self.server_cpu_s * per,
            "main_thread_ms_per_send": self.main_thread_cpu_s * per,
        }
        if self.tier_cpu_s:
            tiers = sorted(self.tier_cpu_s.items(), key=lambda item: -item[1])
            costs["ms_per_send_by_tier"] = ", ".join(f"{t} {s * per:.2f}" for t, s in tiers)
        return costs

    def thread_split(self, top: int = 3) -> dict[str, Any]:
        """Server CPU per thread since mark(), in % of one core: the main thread (the event
        loop) and the busiest others, so a reader sees whether one thread saturates."""
        wall = time.perf_counter() - self._wall_mark
        now = self.server.thread_cpu_seconds()
        used: dict[int, tuple[str, float]] = {}
        for tid, (name, seconds) in now.items():
            before = self._threads_mark.get(tid, (name, 0.0))[1]
            used[tid] = (name, (seconds - before) / wall * 100)
        main = used.pop(self.server.pid, ("main", 0.0))[1]
        self.main_thread_cpu_s = main / 100 * wall
        busiest = sorted(used.items(), key=lambda item: -item[1][1])[:top]
        return {
            "main_thread_cpu_%": round(main),
            "other_threads_cpu_%": ", ".join(
                f"{name}/{tid}: {share:.0f}" for tid, (name, share) in busiest
            ),
        }

    def cpu_split(self, worker_results: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """CPU use since mark(), in % of one core: server process(es) vs load-generator
        processes; on a cluster also its busiest processes."""
        wall = time.perf_counter() - self._wall_mark
        self.server_cpu_s = self.server.cpu_seconds() - self._cpu_mark
        server = self.server_cpu_s / wall * 100
        loadgen = sum(r.get("cpu_s", 0.0) for r in worker_results) / wall * 100
        split: dict[str, Any] = {"server_cpu_%": round(server), "loadgen_cpu_%": round(loadgen)}
        if isinstance(self.server, ClusterServer):
            now = self.server.cpu_by_process()
            used_s = {n: now[n] - self._process_marks.get(n, 0.0) for n in now}
            use = {n: seconds / wall * 100 for n, seconds in used_s.items()}
            self.tier_cpu_s = {}
            for name, seconds in used_s.items():
                tier = name.rstrip("0123456789").rstrip("-")  # chat-1, chat-2 -> chat
                self.tier_cpu_s[tier] = self.tier_cpu_s.get(tier, 0.0) + seconds
            busiest = sorted(use.items(), key=lambda item: -item[1])[:5]
            split["busiest_cpu_%"] = ", ".join(f"{n} {round(u)}" for n, u in busiest)
            # The tiers an event crosses to a socket, each summed over its replicas.
            for tier in ("gateway", "chat"):
                split[f"{tier}s_cpu_%"] = round(
                    sum(u for n, u in use.items() if n.startswith(f"{tier}-")), 1
                )
        return split


@contextlib.contextmanager
def _system(
    args: argparse.Namespace,
    prepare: Callable[[Path], None] | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """The server of the run (`chatmesh dev` or the local cluster) with `settings` on top of
    its environment."""
    raise_nofile(args.nofile)
    with tempfile.TemporaryDirectory(prefix="chatmesh-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        if prepare is not None:
            prepare(data_dir)
        settings = dict(settings or {})
        server: BenchServer = (
            ClusterServer(Path(tmp) / "cluster", settings)
            if args.mode == "cluster"
            else DevServer(data_dir, **settings)
        )
        server.start()
        admin = Admin(server.grpc_target)
        run = Run(args, server, admin)
        try:
            yield run
        finally:
            if run.pool is not None:
                run.pool.close()
            admin.close()
            server.stop()


def _with_profile(run: Run, result: Result, name: str, body: Callable[[], None]) -> None:
    """Runs `body`, sampling the server with py-spy when --profile is given."""
    if not run.args.profile:
        body()
        return
    out = Path(run.args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{name}-profile.collapsed"
    run.server.start_profile(raw, fmt="raw")
    try:
        body()
    finally:
        run.server.stop_profile()
    summary = summarize_profile(raw)
    (out / f"{name}-profile.md").write_text(summary)
    result.notes.append(f"server profile ({name}): {out / (name + '-profile.md')}")


def _groups(users: Sequence[str], size: int) -> list[list[str]]:
    return [list(users[i : i + size]) for i in range(0, len(users), size)]


def _lat_row(label: str, samples_ms: Sequence[float]) -> dict[str, Any]:
    return {
        "step": label,
        "samples": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p99_ms": percentile(samples_ms, 99),
        "p99.9_ms": percentile(samples_ms, 99.9),
        "max_ms": max(samples_ms) if samples_ms else float("nan"),
    }


def _collect_floats(results: Sequence[dict[str, Any]], key: str) -> list[float]:
    values: list[float] = []
    for r in results:
        values.extend(floats(r[key]))
    return values


# -- send ---------------------------------------------------------------------------------------


def scenario_send(args: argparse.Namespace) -> Result:
    """Acknowledged sends/s at saturation (closed loop), ack latency at fixed offered rates."""
    users = [f"s{i}" for i in range(args.users)]
    params = _params(
        args, "users", "group_size", "rates", "seconds", "workers", "body_bytes", "per_user_rate"
    )
    result = Result("send", args.mode, params)
    result.notes.append(
        f"{args.users} users, one device each, all connected and subscribed, in groups of "
        f"{args.group_size}: every send is also fanned out to the {args.group_size} devices of "
        "its group (the sender's own included). Each user sends at most "
        f"{args.per_user_rate:g}/s (the gateway limit is 20/s per user)."
    )
    with _system(args) as run:
        groups = _groups(users, args.group_size)
        conv_of: dict[str, str] = {}
        for members in groups:
            cid = run.admin.create(members[0], members[1:])
            for u in members:
                conv_of[u] = cid
        pool = run.start_pool([Device(u) for u in users], args.workers, args.nofile)
        connected = pool.call("connect", subscribe=True)
        _check_connected(connected, len(users))
        per_worker_targets = _targets(run, users, conv_of)

        # Saturation: closed loop, every user as fast as its acks (and per-user cap) allow.
        def saturate() -> None:
            run.mark()
            start_at = time.time() + 0.3
            results = pool.call(
                "send_closed",
                per_worker=[
                    {
                        "targets": t,
                        "duration_s": args.seconds,
                        "start_at": start_at,
                        "body_bytes": args.body_bytes,
                        "per_target_rate": args.per_user_rate,
                    }
                    for t in per_worker_targets
                ],
            )
            acked = sum(r["acked_in_window"] for r in results)
            window = max(r["window_s"] for r in results)
            lat = [x * MS for x in _collect_floats(results, "ack_lat")]
            row = _lat_row("saturation (closed loop)", lat)
            row = {
                "step": row.pop("step"),
                "offered_per_s": f"<= {args.users * args.per_user_rate:,.0f}",
                "acked_per_s": acked / window,
                **row,
                "errors": merge_counters(r["errors"] for r in results),
                **run.cpu_split(results),
            }
            result.rows.append(row)
            result.series["saturation"] = lat

        _with_profile(run, result, "send-saturation", saturate)
        saturation = result.rows[0]["acked_per_s"]
        result.target("acked durable sends/s (saturation)", saturation, 2000, True)

        for rate in args.rates:
            if rate / len(users) > args.per_user_rate:
                result.notes.append(f"rate {rate}/s skipped: over {args.per_user_rate}/s per user")
                continue
            time.sleep(1.0)
            run.mark()
            start_at = time.time() + 0.3
            results = pool.call(
                "send_open",
                per_worker=[
                    {
                        "targets": t,
                        "rate": rate * len(t) / len(users),
                        "duration_s": args.seconds,
                        "start_at": start_at,
                        "body_bytes": args.body_bytes,
                    }
                    for t in per_worker_targets
                ],
            )
            lat = [x * MS for x in _collect_floats(results, "ack_lat")]
            lag = [x * MS for x in _collect_floats(results, "send_lag")]
            sent = sum(r["sent"] for r in results)
            row = _lat_row(f"{rate}/s offered", lat)
            result.rows.append(
                {
                    "step": row.pop("step"),
                    "offered_per_s": rate,
                    "acked_per_s": len(lat) / max(r["send_seconds"] for r in results),
                    **row,
                    "loadgen_lag_p99_ms": percentile(lag, 99),
                    "lost": sum(r["lost"] for r in results) + (sent - len(lat) - sum(
                        sum(r["errors"].values()) for r in results)),
                    "errors": merge_counters(r["errors"] for r in results),
                    **run.cpu_split(results),
                }
            )  # fmt: skip
            result.series[f"{rate}/s"] = lat
    return result


def _targets(
    run: Run, users: Sequence[str], conv_of: dict[str, str]
) -> list[list[tuple[int, str]]]:
    """Per worker, (socket index in that worker, conversation) of each of its users."""
    assert run.pool is not None
    workers = len(run.pool)
    per = -(-len(users) // workers)
    targets: list[list[tuple[int, str]]] = [[] for _ in range(workers)]
    for i, u in enumerate(users):
        targets[i // per].append((i % per, conv_of[u]))
    # Interleave conversations so consecutive sends of a worker hit different groups.
    return targets


def _check_connected(results: Sequence[dict[str, Any]], expected: int) -> None:
    connected = sum(r["connected"] for r in results)
    if connected != expected:
        failed = merge_counters(r["failed"] for r in results)
        raise RuntimeError(f"connected {connected} of {expected} devices; failures: {failed}")


# -- deliver ------------------------------------------------------------------------------------


def scenario_deliver(args: argparse.Namespace) -> Result:
    """End-to-end latency, send to receipt at the other members, at fixed offered rates."""
    users = [f"d{i}" for i in range(args.devices)]
    result = Result("deliver", args.mode, _params(args, "devices", "group_size", "rates",
                                                  "seconds", "workers", "body_bytes"))  # fmt: skip
    result.notes.append(
        f"{args.devices} devices (one per user) in groups of {args.group_size}; every device "
        "sends in turn; latency = receipt time at each other member minus the send's scheduled "
        "time (one clock: same machine)."
    )
    with _system(args) as run:
        _e2e_ladder(run, users, result)
    return result


def _connected_groups(run: Run, users: Sequence[str]) -> list[list[tuple[int, str]]]:
    """Groups of `--group-size` created, every user's device connected and subscribed; each
    worker's send targets, interleaved so that user i of each group sends in turn (a group
    then sends at rate / groups)."""
    args = run.args
    conv_of: dict[str, str] = {}
    for members in _groups(users, args.group_size):
        cid = run.admin.create(members[0], members[1:])
        for u in members:
            conv_of[u] = cid
    pool = run.start_pool([Device(u) for u in users], args.workers, args.nofile)
    _check_connected(pool.call("connect", subscribe=True), len(users))
    per_worker_targets = _targets(run, users, conv_of)
    for t in per_worker_targets:
        t.sort(key=lambda item: (item[0] % args.group_size, item[0]))
    return per_worker_targets


def _e2e_ladder(run: Run, users: Sequence[str], result: Result, threads: bool = False) -> None:
    """Groups connected, then one `_e2e_step` per offered rate of `--rates` (the last one
    profiled with --profile); the 1,000 sends/s target when that rate was run."""
    per_worker_targets = _connected_groups(run, users)
    for n, rate in enumerate(run.args.rates):
        time.sleep(1.0)

        def step(rate: float = rate) -> None:
            _e2e_step(run, per_worker_targets, len(users), rate, result, threads=threads)

        if n == len(run.args.rates) - 1:
            _with_profile(run, result, result.scenario, step)
        else:
            step()
    at_1000 = [r for r in result.rows if r["step"] == "1000 sends/s"]
    if at_1000:
        result.target("e2e p99 ms at 1,000 sends/s", at_1000[0]["p99_ms"], 50, False)


def _e2e_step(
    run: Run,
    per_worker_targets: Sequence[Sequence[tuple[int, str]]],
    senders: int,
    rate: float,
    result: Result,
    threads: bool = False,
) -> None:
    """One open-loop step at `rate` sends/s: e2e latency (scheduled send time to each other
    member's receipt), acks/s, ack p99, the load generator's schedule lag, the CPU split."""
    args = run.args
    assert run.pool is not None
    pool = run.pool
    pool.call("record")
    run.mark()
    start_at = time.time() + 0.3
    results = pool.call(
        "send_open",
        per_worker=[
            {
                "targets": t,
                "rate": rate * len(t) / senders,
                "duration_s": args.seconds,
                "start_at": start_at,
                "body_bytes": args.body_bytes,
            }
            for t in per_worker_targets
        ],
    )
    time.sleep(1.0)  # late deliveries
    delivered = pool.call("collect")
    cpu = run.cpu_split([*results, *delivered])
    per_thread = run.thread_split() if threads else {}
    sent = _collect_floats(delivered, "sent")
    recv = _collect_floats(delivered, "recv")
    e2e = [(r - s) * MS for s, r in zip(sent, recv, strict=True)]
    acked = sum(r["acked"] for r in results)
    expected = acked * (args.group_size - 1)
    lag = [x * MS for x in _collect_floats(results, "send_lag")]
    ack_lat = [x * MS for x in _collect_floats(results, "ack_lat")]
    row = _lat_row(f"{rate:g} sends/s", e2e)
    extra: dict[str, Any] = {}
    if threads:
        extra["acked_per_s"] = acked / max(r["ack_seconds"] for r in results)
        extra["ack_p50_ms"] = percentile(ack_lat, 50)
    result.rows.append(
        {
            "step": row.pop("step"),
            **extra,
            "deliveries_per_s": len(e2e) / args.seconds,
            "delivered": f"{len(e2e):,} / {expected:,}",
            **row,
            "ack_p99_ms": percentile(ack_lat, 99),
            "loadgen_lag_p99_ms": percentile(lag, 99),
            "errors": merge_counters(r["errors"] for r in results),
            **cpu,
            **per_thread,
            **(run.cpu_per_send(acked) if threads else {}),
        }
    )
    result.series[f"{rate:g} sends/s"] = e2e


# -- groups -------------------------------------------------------------------------------------


def scenario_groups(args: argparse.Namespace) -> Result:
    """Users in groups, every one connected with (by default) JSON text frames as browsers are:
    e2e latency to the other members of the group at an offered-rate ladder, with server CPU
    per process and per thread, load-generator CPU and schedule lag."""
    users = [f"g{i}" for i in range(args.users)]
    encoding = "binary" if args.binary else "JSON"
    result = Result("groups", args.mode, _params(args, "users", "group_size", "rates", "seconds",
                                                 "workers", "body_bytes", "binary"))  # fmt: skip
    result.notes.append(
        f"{args.users} users, one device each, in groups of {args.group_size}, every device "
        f"connected and resumed with {encoding} frames; sends round-robin over the users, so a "
        "group sends at rate / groups. e2e = receipt at each other member minus the send's "
        "scheduled time (open loop, one clock). main_thread_cpu_% is the server's event-loop "
        "thread; other threads by name/tid."
    )
    with _system(args) as run:
        _e2e_ladder(run, users, result, threads=True)
    return result


# -- write --------------------------------------------------------------------------------------


# The gateway's per-user limit (20/s, bursts of 40) would cap 20 senders near 400 acks/s.
WRITE_SETTINGS = {"CHATMESH_WS_SEND_RATE_PER_S": "100000", "CHATMESH_WS_SEND_BURST": "100000"}


def scenario_write(args: argparse.Namespace) -> Result:
    """Closed-loop senders in one conversation: acks/s and ack latency of the write path."""
    users = [f"w{i}" for i in range(args.senders)]
    encoding = "binary" if args.binary else "JSON"
    result = Result("write", args.mode, _params(args, "senders", "seconds", "body_bytes",
                                                "per_user_rate", "binary"))  # fmt: skip
    result.notes.append(
        f"{args.senders} users in one group conversation, each connected and resumed with "
        f"{encoding} frames, each sending its next message when the last is acknowledged (at "
        f"most {args.per_user_rate:g}/s per user). Every send is also delivered to the other "
        f"{args.senders - 1} members' sockets. The server runs with the gateway's per-user send "
        "limit lifted (WRITE_SETTINGS), so the write path is measured, not the limiter."
    )
    with _system(args, settings=WRITE_SETTINGS) as run:
        cid = run.admin.create(users[0], users[1:])
        pool = run.start_pool([Device(u) for u in users], 1, args.nofile)
        _check_connected(pool.call("connect", subscribe=True), len(users))
        targets = [(i, cid) for i in range(len(users))]

        def step() -> None:
            run.mark()
            start_at = time.time() + 0.3
            (r,) = pool.call(
                "send_closed",
                per_worker=[
                    {
                        "targets": targets,
                        "duration_s": args.seconds,
                        "start_at": start_at,
                        "body_bytes": args.body_bytes,
                        "per_target_rate": args.per_user_rate,
                    }
                ],
            )
            lat = [x * MS for x in floats(r["ack_lat"])]
            row = _lat_row(f"{args.senders} senders, closed loop", lat)
            result.rows.append(
                {
                    "step": row.pop("step"),
                    "acked_per_s": r["acked_in_window"] / r["window_s"],
                    **row,
                    "errors": r["errors"],
                    **run.cpu_split([r]),
                    **run.thread_split(),
                    **run.cpu_per_send(len(lat)),
                }
            )
            result.series["closed loop"] = lat

        _with_profile(run, result, "write", step)
        result.target(f"acks/s, {args.senders} senders in one conversation",
                      result.rows[0]["acked_per_s"], 2000, True)  # fmt: skip
    return result


# -- fanout -------------------------------------------------------------------------------------


def scenario_fanout(args: argparse.Namespace) -> Result:
    """One message into a channel of N connected members: time until the last delivery."""
    members = [f"f{i}" for i in range(args.members)]
    owner = "fowner"
    result = Result("fanout", args.mode, _params(args, "members", "messages", "gap_s",
                                                 "workers", "body_bytes"))  # fmt: skip
    with _system(args) as run:
        cid = run.admin.create(owner, members, kind="channel")
        devices = [Device(owner), *(Device(m) for m in members)]
        pool = run.start_pool(devices, args.workers, args.nofile)
        t0 = time.perf_counter()
        _check_connected(pool.call("connect", subscribe=True), len(devices))
        result.notes.append(
            f"{len(devices):,} devices connected and subscribed in "
            f"{time.perf_counter() - t0:.1f} s; channel kind, so fanout is on read "
            "(one bus publish on the conversation subject, one handler per member stream)."
        )

        def probe() -> None:
            pool.call("record")
            run.mark()
            sends = []
            for _ in range(args.messages):
                sends.append(pool.call_one(0, "send_one", index=0, conversation_id=cid,
                                           body_bytes=args.body_bytes))  # fmt: skip
                time.sleep(args.gap_s)
            deadline = time.time() + 30
            time.sleep(1.0)
            delivered = pool.call("collect", stop=False)
            while time.time() < deadline:
                n = sum(len(floats(d["recv"])) for d in delivered)
                if n >= args.messages * args.members:
                    break
                time.sleep(1.0)
                more = pool.call("collect", stop=False)
                delivered = [
                    {"sent": a["sent"] + b["sent"], "recv": a["recv"] + b["recv"],
                     "cpu_s": a["cpu_s"] + b["cpu_s"]}
                    for a, b in zip(delivered, more, strict=True)
                ]  # fmt: skip
            pool.call("collect")
            cpu = run.cpu_split(delivered)
            sent = _collect_floats(delivered, "sent")
            recv = _collect_floats(delivered, "recv")
            by_message: dict[float, list[float]] = {}
            for s, r in zip(sent, recv, strict=True):
                by_message.setdefault(round(s, 6), []).append((r - s) * MS)
            for n, send in enumerate(sends):
                times = by_message.get(round(send["sent_at"], 6), [])
                result.rows.append(
                    {
                        "message": n + 1,
                        "delivered": f"{len(times):,} / {args.members:,}",
                        "ack_ms": send["ack_s"] * MS if send["ack_s"] is not None else None,
                        "first_ms": min(times) if times else float("nan"),
                        "p50_ms": percentile(times, 50),
                        "p99_ms": percentile(times, 99),
                        "last_ms": max(times) if times else float("nan"),
                        **cpu,
                    }
                )
                result.series[f"message {n + 1}"] = times

        _with_profile(run, result, "fanout", probe)
        lasts = sorted(r["last_ms"] for r in result.rows)
        if lasts:
            result.target("median time to last delivery, ms", percentile(lasts, 50), 1000, False)
    return result


# -- idle ---------------------------------------------------------------------------------------


def scenario_idle(args: argparse.Namespace) -> Result:
    """N connected devices with heartbeats: resident memory per connection of the server."""
    users = [f"i{i}" for i in range(args.devices)]
    result = Result("idle", args.mode, _params(args, "devices", "steps", "hold_s", "workers",
                                               "subscribe", "settle_s"))  # fmt: skip
    if args.mode == "cluster":
        result.notes.append(
            "Cluster mode: per_conn_kib is the RSS growth of every process of the cluster "
            "summed (Envoy, both gateways, both chat_service replicas, presence, ...); "
            "gateway_kib_per_conn is the two gateways' alone. With --subscribe each socket's "
            "event stream is open (multiplexed on one call per gateway unless "
            "CHATMESH_WS_EVENT_STREAMS=per_device)."
        )
    else:
        result.notes.append(
            "Embedded mode runs gateway and chat_service in one process: the figure per "
            "connection is that process's RSS growth, so with --subscribe it includes the "
            "device's event stream: the EventService stream served in-process (its queue and "
            "bus subscription) and the gateway's reader task."
        )
    with _system(args) as run:
        for members in _groups(users, 10):
            run.admin.create(members[0], members[1:])
        time.sleep(args.settle_s)
        base = run.server.rss_bytes()
        gateway_base = _gateway_rss(run.server)
        xs, ys = [0.0], [base / 2**20]
        result.rows.append({"connections": 0, "rss_mib": base / 2**20, "per_conn_kib": None})
        pool_devices = [Device(u) for u in users]
        # Connect in steps: each worker holds its block; the steps connect slices of it.
        blocks = max(1, args.steps)
        slices = [pool_devices[i::blocks] for i in range(blocks)]
        connected = 0
        pools: list[Pool] = []
        try:
            for part in slices:
                if not part:
                    continue
                pool = Pool(run.server.ws_url, _split(part, args.workers), args.nofile,
                            args.binary)  # fmt: skip
                pools.append(pool)
                results = pool.call("connect", subscribe=args.subscribe)
                _check_connected(results, len(part))
                connected += len(part)
                time.sleep(args.settle_s)
                rss = run.server.rss_bytes()
                xs.append(connected)
                ys.append(rss / 2**20)
                result.rows.append(
                    {
                        "connections": connected,
                        "rss_mib": rss / 2**20,
                        "per_conn_kib": (rss - base) / connected / 1024,
                        **_gateway_growth(run.server, gateway_base, connected),
                    }
                )
            run.mark()
            time.sleep(args.hold_s)
            status = [s for p in pools for s in p.call("status")]
            cpu = run.cpu_split(status)
            rss = run.server.rss_bytes()
            open_now = sum(s["open"] for s in status)
            result.rows.append(
                {
                    "connections": open_now,
                    "rss_mib": rss / 2**20,
                    "per_conn_kib": (rss - base) / max(1, open_now) / 1024,
                    **_gateway_growth(run.server, gateway_base, open_now),
                    "after": f"held {args.hold_s:g} s (server pings every 20 s)",
                    **cpu,
                }
            )
            gateway_now = _gateway_rss(run.server)
            if gateway_base is not None and gateway_now is not None:
                result.target("gateway KiB per idle connection",
                              (gateway_now - gateway_base) / max(1, open_now) / 1024,
                              20, False)  # fmt: skip
            xs.append(open_now + 0.5)
            ys.append(rss / 2**20)
            result.target("KiB per idle connection", (rss - base) / max(1, open_now) / 1024,
                          30, False)  # fmt: skip
            if open_now != connected:
                result.notes.append(f"{connected - open_now} sockets dropped while idle")
        finally:
            for pool in pools:
                pool.close()
        result.xy["server RSS"] = (xs, ys)
        result.xy_labels = ("connected devices", "server RSS (MiB)")
    return result


def _gateway_rss(server: BenchServer) -> int | None:
    """The gateways' resident memory summed, in a cluster (None: one process, embedded)."""
    by_process = getattr(server, "rss_by_process", None)
    if by_process is None:
        return None
    processes: dict[str, int] = by_process()
    return sum(rss for name, rss in processes.items() if name.startswith("gateway"))


def _gateway_growth(server: BenchServer, base: int | None, connections: int) -> dict[str, float]:
    """The gateways' share of an idle row: their RSS growth per connection (cluster only)."""
    now = _gateway_rss(server)
    if base is None or now is None:
        return {}
    return {"gateway_kib_per_conn": (now - base) / max(1, connections) / 1024}


def _split(devices: Sequence[Device], workers: int) -> list[list[Device]]:
    per = -(-len(devices) // workers)
    return [list(devices[i : i + per]) for i in range(0, len(devices), per)]


# -- history ------------------------------------------------------------------------------------


def scenario_history(args: argparse.Namespace) -> Result:
    """Newest-page read latency on a conversation with N messages."""
    owner = "howner"
    result = Result("history", args.mode, _params(args, "messages", "requests", "concurrency",
                                                  "page", "body_bytes"))  # fmt: skip
    holder: dict[str, str] = {}

    def prepare(data_dir: Path) -> None:
        began = time.perf_counter()
        holder["cid"] = asyncio.run(seed_history(data_dir, owner, args.messages, args.body_bytes))
        result.notes.append(
            f"{args.messages:,} messages seeded through ChatStore.append_message in "
            f"{time.perf_counter() - began:.1f} s before the server started."
        )

    with _system(args, prepare) as run:
        cid = holder["cid"]
        pool = run.start_pool([Device(owner)], 1, args.nofile)
        _check_connected(pool.call("connect", subscribe=True), 1)
        pool.call_one(0, "history", index=0, conversation_id=cid,
                      requests=min(200, args.requests), concurrency=1, limit=args.page)  # fmt: skip
        for concurrency in args.concurrency:

            def step(concurrency: int = concurrency) -> None:
                run.mark()
                r = pool.call_one(0, "history", index=0, conversation_id=cid,
                                  requests=args.requests, concurrency=concurrency,
                                  limit=args.page)  # fmt: skip
                lat = [x * MS for x in floats(r["lat"])]
                row = _lat_row(f"concurrency {concurrency}", lat)
                result.rows.append(
                    {
                        "step": row.pop("step"),
                        "pages_per_s": len(lat) / r["seconds"],
                        **row,
                        "errors": r["errors"],
                        **run.cpu_split([r]),
                    }
                )
                result.series[f"concurrency {concurrency}"] = lat

            if concurrency == args.concurrency[0]:
                _with_profile(run, result, "history", step)
            else:
                step()
        result.target("history page p99 ms (concurrency 1)", result.rows[0]["p99_ms"], 10, False)
    return result


def _params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}


def scenario_soak(args: argparse.Namespace) -> Result:
    """A steady rate for `--minutes` windows: e2e latency per window and memory growth."""
    users = [f"k{i}" for i in range(args.devices)]
    (rate,) = args.rates[-1:]
    params = _params(
        args, "devices", "group_size", "rates", "seconds", "minutes", "workers", "body_bytes"
    )
    result = Result("soak", args.mode, params)
    result.notes.append(
        f"{args.devices} devices (one per user) in groups of {args.group_size}, {rate:g} sends/s "
        f"for {args.minutes} windows of {args.seconds:g} s, back to back; latency as in deliver."
    )
    with _system(args) as run:
        per_worker_targets = _connected_groups(run, users)

        def window() -> None:
            _e2e_step(run, per_worker_targets, len(users), rate, result)

        soak_windows(args, run.server, result, window)
    p99s = [r["p99_ms"] for r in result.rows]
    result.target("worst window e2e p99 ms", max(p99s), 50, False)
    return result


SCENARIOS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "send": scenario_send,
    "deliver": scenario_deliver,
    "fanout": scenario_fanout,
    "idle": scenario_idle,
    "history": scenario_history,
    "media": scenario_media,
    "search": scenario_search,
    "push": scenario_push,
    "groups": scenario_groups,
    "write": scenario_write,
    "soak": scenario_soak,
}
