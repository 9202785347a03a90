"""The `push` scenario: push notifications to offline members, from send to the provider.

notify_service runs in `chatmesh dev` (its consumer and delivery in dev's consumer worker,
metrics on the worker's endpoint) with the webhook provider (CHATMESH_WEBHOOK_SECRET set).
Every offline member registers a webhook target (NotifyService.RegisterDevice with the member's
own token) pointing at `Receiver`, a plain HTTP/1.1 server in this process that stands
in for APNs/FCM: it answers 204 at once (no TLS, no signature check, so it costs the server
nothing it would not pay a real provider) and records for each push its arrival time, the
member (from the URL path) and the ids of the payload's `data` (conversation_id, seq, count).

Push lag is the arrival at the receiver minus the message's send time: the time the sender
wrote the frame (open-loop sends: its scheduled time), carried in the message body and so in
the push body (preview FULL). It therefore includes the send's ack latency (a few ms, shown
beside it); the ack time itself is not known per message in the steady step.

Steps:

1. channel fan-out: one channel of `--members` members, none connected, each with a webhook
   target and its notification level for the channel set to ALL (channels default to mentions
   only; UpdateNotificationSettings per member, rather than one message mentioning everyone).
   The owner posts `--messages` messages over gRPC, each after the previous one's pushes have
   all arrived (so nothing coalesces): pushes/s and lag p50/p99 per message.
2. steady load: `--groups` groups of `--group-size`, the first half of each connected over the
   WebSocket edge (presence online, no push) and sending, the second half offline with targets;
   `--rates` messages/s for `--seconds`: lag p50/p99, and whether exactly one push per offline
   member per message arrived (duplicates, coalesced pushes and missing ones are counted).
3. send-ack latency at `--ack-rate` for `--ack-seconds` on the same groups with push off (the
   targets unregistered), with the provider down (connection refused) and with a hanging
   provider (the receiver takes the request and never answers): ack p50/p99 each.

`--device-interval-s` (CHATMESH_NOTIFY_DEVICE_INTERVAL_S, default 0 here, 1 s in the product)
spaces two pushes to one device; at its product default a member receiving two messages within a
second gets one push with count 2 by design, which would make step 2 measure the spacing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from chatmesh.notify.v1 import notify_service_pb2 as npb
from chatmesh.notify.v1 import notify_service_pb2_grpc

from bench.loadgen import Device, Pool, bench_body, floats
from bench.report import Result, merge_counters, percentile, summarize_profile
from bench.system import Admin, DevServer, free_port, raise_nofile, token
from chatmesh_common.auth import auth_metadata

MS = 1000.0
WEBHOOK_SECRET = "bench-webhook-secret"
OWNER = "powner"


# -- the receiver -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    user: str
    conversation_id: str
    seq: int
    count: int
    # The send time carried in the message body, or NaN for a push whose body has none.
    sent: float


def _sent_time(body: str) -> float:
    """The send time of a bench body (`b|<unix time>|...`), also when prefixed `sender: `."""
    start = body.find("b|")
    if start < 0:
        return float("nan")
    end = body.find("|", start + 2)
    try:
        return float(body[start + 2 : end])
    except ValueError:
        return float("nan")


@dataclass
class _Stats:
    arrivals: list[Arrival] = field(default_factory=list)
    # Messages the arrivals stand for (a coalesced push counts for `count` messages).
    covered: int = 0
    held: int = 0
    malformed: int = 0


class Receiver:
    """An HTTP/1.1 server on its own thread and event loop: POST /u/<user> is recorded and
    answered 204 at once; POST /hang/<user> is read and never answered (until `stop`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._stats = _Stats()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push-receiver", daemon=True)

    def url(self, user: str, hang: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}/{'hang' if hang else 'u'}/{user}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the push receiver did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stopping = asyncio.Event()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                length = 0
                for header in rest.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                now = time.time()
                # Read per request: take() swaps the record under keep-alive connections.
                stats = self._stats
                path = line.split(b" ")[1].decode()
                _, kind, user = path.split("/", 2)
                if kind == "hang":
                    # Read, never answered: the connection stays open until stop().
                    stats.held += 1
                    assert self._stopping is not None
                    await self._stopping.wait()
                    return
                try:
                    payload = json.loads(body)
                    data = payload["data"]
                    arrival = Arrival(
                        now,
                        user,
                        data["conversation_id"],
                        int(data["seq"]),
                        int(data.get("count", "1")),
                        _sent_time(payload["body"]),
                    )
                    stats.arrivals.append(arrival)
                    stats.covered += arrival.count
                except (ValueError, KeyError, TypeError):
                    stats.malformed += 1
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def take(self) -> tuple[list[Arrival], int]:
        """The pushes recorded since the last take, and the requests held since then."""
        stats, self._stats = self._stats, _Stats()
        return stats.arrivals, stats.held

    def covered(self) -> int:
        """Messages the pushes since the last take stand for (coalesced ones count each)."""
        return self._stats.covered

    def stop(self) -> None:
        """Closes every connection (held requests fail at the client), then the server."""

        async def close() -> None:
            if self._stopping is not None:
                self._stopping.set()
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                self._server.close()
            await asyncio.sleep(0.05)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# -- setup through NotifyService ----------------------------------------------------------------


class Notify:
    """RegisterDevice / UnregisterDevice / UpdateNotificationSettings, each with the member's
    own token (device d0), issued `batch` at a time as gRPC futures."""

    def __init__(self, target: str, batch: int = 200) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = notify_service_pb2_grpc.NotifyServiceStub(self._channel)
        self._batch = batch

    def close(self) -> None:
        self._channel.close()

    def _each(self, calls: Sequence[tuple[Any, Any, str]]) -> None:
        for i in range(0, len(calls), self._batch):
            futures = [
                method.future(request, metadata=auth_metadata(token(user)), timeout=60)
                for method, request, user in calls[i : i + self._batch]
            ]
            for future in futures:
                future.result()

    def register(self, urls: dict[str, str]) -> None:
        self._each(
            [
                (self._stub.RegisterDevice, npb.RegisterDeviceRequest(
                    target=npb.PushTarget(platform=npb.PLATFORM_WEBHOOK, token=url)), user)
                for user, url in urls.items()
            ]
        )  # fmt: skip

    def unregister(self, users: Sequence[str]) -> None:
        self._each([(self._stub.UnregisterDevice, npb.UnregisterDeviceRequest(), u) for u in users])

    def level_all(self, users: Sequence[str], conversation_id: str) -> None:
        settings = npb.ConversationSettings(
            conversation_id=conversation_id, level=npb.NOTIFY_LEVEL_ALL
        )
        request = npb.UpdateNotificationSettingsRequest(conversations=[settings])
        self._each([(self._stub.UpdateNotificationSettings, request, u) for u in users])


# -- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _system(args: argparse.Namespace) -> Iterator[tuple[DevServer, Receiver]]:
    raise_nofile(args.nofile)
    with tempfile.TemporaryDirectory(prefix="chatmesh-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        receiver = Receiver()
        receiver.start()
        server = DevServer(
            data_dir,
            CHATMESH_WEBHOOK_SECRET=WEBHOOK_SECRET,
            CHATMESH_NOTIFY_DEVICE_INTERVAL_S=str(args.device_interval_s),
        )
        try:
            server.start()
            yield server, receiver
        finally:
            # Held requests first, so the server's shutdown does not wait on them.
            receiver.stop()
            server.stop()


def _wait_for(receiver: Receiver, expected: int, timeout_s: float, quiet_s: float) -> None:
    """Until `expected` pushes arrived, `timeout_s` passed, or none came for `quiet_s`."""
    deadline = time.time() + timeout_s
    last_n, last_change = receiver.covered(), time.time()
    while time.time() < deadline:
        n = receiver.covered()
        if n >= expected:
            return
        if n != last_n:
            last_n, last_change = n, time.time()
        elif time.time() - last_change > quiet_s:
            return
        time.sleep(0.02)


def notify_metrics(server: DevServer) -> dict[str, float]:
    """chatmesh_notify_* samples of the server's Prometheus endpoint ("name{labels}": value)."""
    url = f"http://127.0.0.1:{server.notify_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("chatmesh_notify_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _handled(server: DevServer) -> int:
    """Message events notify's consumer has handled so far."""
    return int(
        notify_metrics(server).get('chatmesh_notify_events_total{kind="message_created"}', 0)
    )


def _wait_handled(server: DevServer, total: int, timeout_s: float) -> float:
    """Waits until the consumer handled `total` message events; the seconds it took."""
    began = time.time()
    while _handled(server) < total and time.time() - began < timeout_s:
        time.sleep(0.1)
    return time.time() - began


def _outcomes(server: DevServer) -> str:
    """Push attempts by result and failures by reason, from the server's metrics."""
    parts = []
    for name, value in sorted(notify_metrics(server).items()):
        if value and name.startswith(
            ("chatmesh_notify_pushes_total{", "chatmesh_notify_push_failures_total{")
        ):
            parts.append(f"{name.removeprefix('chatmesh_notify_')} {value:g}")
    return "; ".join(parts) or "none"


def _lags_ms(arrivals: Sequence[Arrival]) -> list[float]:
    return [(a.at - a.sent) * MS for a in arrivals if a.sent == a.sent]


def _lag_cells(lags: Sequence[float]) -> dict[str, Any]:
    return {
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags) if lags else float("nan"),
    }


def _ack_cells(acks_ms: Sequence[float]) -> dict[str, Any]:
    return {
        "ack_p50_ms": percentile(acks_ms, 50),
        "ack_p99_ms": percentile(acks_ms, 99),
        "ack_p99.9_ms": percentile(acks_ms, 99.9),
        "ack_max_ms": max(acks_ms) if acks_ms else float("nan"),
    }


def _exactly_once(arrivals: Sequence[Arrival], expected: int) -> dict[str, Any]:
    keys = Counter((a.user, a.conversation_id, a.seq) for a in arrivals)
    covered = sum(a.count for a in arrivals)
    return {
        "pushes": f"{len(arrivals):,} / {expected:,}",
        "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        "coalesced": sum(1 for a in arrivals if a.count > 1),
        "missing": max(0, expected - covered),
        "exactly_once": len(arrivals) == expected == len(keys) == covered,
    }


# -- the scenario -------------------------------------------------------------------------------


def _channel_step(
    args: argparse.Namespace, result: Result, server: DevServer, receiver: Receiver
) -> None:
    members = [f"pc{i}" for i in range(args.members)]
    admin = Admin(server.grpc_target)
    notify = Notify(server.grpc_target)
    try:
        began = time.perf_counter()
        cid = admin.create(OWNER, members, kind="channel")
        notify.level_all(members, cid)
        notify.register({m: receiver.url(m) for m in members})
        result.notes.append(
            f"Channel: {args.members:,} members created, level ALL set and webhook targets "
            f"registered over gRPC in {time.perf_counter() - began:.1f} s; none connected."
        )
        receiver.take()
        lags_all: list[float] = []
        for n in range(args.messages):
            cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
            sent = time.time()
            seq = admin.send(OWNER, cid, f"pc-{n}", bench_body(args.body_bytes, sent))
            acked = time.time()
            _wait_for(receiver, args.members, timeout_s=120, quiet_s=15)
            arrivals, _ = receiver.take()
            mine = [a for a in arrivals if a.conversation_id == cid and a.seq == seq]
            lags = _lags_ms(mine)
            lags_all.extend(lags)
            last = max((a.at for a in mine), default=float("nan"))
            first = min((a.at for a in mine), default=float("nan"))
            cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0) * 100
            result.rows.append(
                {
                    "step": f"channel of {args.members:,}, message {n + 1}",
                    **_exactly_once(mine, args.members),
                    "pushes_per_s": len(mine) / (last - acked) if mine else 0.0,
                    "ack_ms": (acked - sent) * MS,
                    "first_ms": (first - sent) * MS,
                    **_lag_cells(lags),
                    "server_cpu_%": round(cpu),
                }
            )
            time.sleep(args.gap_s)
        result.series[f"channel of {args.members:,}: push lag"] = lags_all
    finally:
        notify.close()
        admin.close()


@dataclass
class _Groups:
    online: list[str]
    offline: list[str]
    # Per worker: (socket index in the worker, conversation) of each online sender.
    targets: list[list[tuple[int, str]]]
    conversations: set[str]


def _make_groups(args: argparse.Namespace, server: DevServer) -> _Groups:
    size = args.group_size
    half = size // 2
    online: list[str] = []
    offline: list[str] = []
    senders: list[tuple[str, str]] = []
    conversations: set[str] = set()
    admin = Admin(server.grpc_target)
    try:
        for g in range(args.groups):
            members = [f"pg{g}-{i}" for i in range(size)]
            cid = admin.create(members[0], members[1:])
            conversations.add(cid)
            online.extend(members[:half])
            offline.extend(members[half:])
            senders.extend((m, cid) for m in members[:half])
    finally:
        admin.close()
    # Interleave: sender k of every group in turn, so consecutive sends hit different groups.
    order = sorted(range(len(senders)), key=lambda i: (i % half, i // half))
    workers = args.workers
    per = -(-len(online) // workers)
    targets: list[list[tuple[int, str]]] = [[] for _ in range(workers)]
    for i in order:
        targets[i // per].append((i % per, senders[i][1]))
    return _Groups(online, offline, targets, conversations)


def _send_open(
    pool: Pool, groups: _Groups, rate: float, seconds: float, body_bytes: int
) -> list[dict[str, Any]]:
    total_targets = sum(len(t) for t in groups.targets)
    start_at = time.time() + 0.3
    return pool.call(
        "send_open",
        per_worker=[
            {
                "targets": t,
                "rate": rate * len(t) / total_targets,
                "duration_s": seconds,
                "start_at": start_at,
                "body_bytes": body_bytes,
            }
            for t in groups.targets
        ],
    )


def _acks_ms(results: Sequence[dict[str, Any]]) -> list[float]:
    return [x * MS for r in results for x in floats(r["ack_lat"])]


def _steady_steps(
    args: argparse.Namespace, result: Result, server: DevServer, receiver: Receiver
) -> None:
    groups = _make_groups(args, server)
    offline_per_message = args.group_size - args.group_size // 2
    notify = Notify(server.grpc_target)
    per = -(-len(groups.online) // args.workers)
    blocks = [groups.online[i : i + per] for i in range(0, len(groups.online), per)]
    pool = Pool(server.ws_url, [[Device(u) for u in b] for b in blocks], args.nofile)
    try:
        connected = pool.call("connect", subscribe=True)
        n = sum(r["connected"] for r in connected)
        if n != len(groups.online):
            raise RuntimeError(f"connected {n} of {len(groups.online)} devices")
        notify.register({u: receiver.url(u) for u in groups.offline})
        result.notes.append(
            f"Steady: {args.groups} groups of {args.group_size}: {len(groups.online):,} members "
            f"connected and subscribed (online: no push), {len(groups.offline):,} offline with a "
            f"webhook target; each message comes from an online member and pushes to the "
            f"{offline_per_message} offline ones. One load-generator process per --workers."
        )
        time.sleep(1.0)
        # A short warm-up (connections to the receiver, caches), not measured.
        warm = _send_open(pool, groups, min(args.rates), 1.0, args.body_bytes)
        sent_total = args.messages + sum(r["acked"] for r in warm)
        _wait_for(receiver, 10**9, timeout_s=10, quiet_s=1.0)
        _wait_handled(server, sent_total, 60)
        receiver.take()

        for rate in args.rates:
            time.sleep(1.0)
            cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
            if args.profile and rate == args.rates[-1]:
                raw = Path(args.out) / "push-profile.collapsed"
                raw.parent.mkdir(parents=True, exist_ok=True)
                server.start_profile(raw, fmt="raw")
            results = _send_open(pool, groups, rate, args.seconds, args.body_bytes)
            acked = sum(r["acked"] for r in results)
            sent_total += acked
            behind = sent_total - _handled(server)
            expected = acked * offline_per_message
            _wait_for(receiver, expected, timeout_s=60, quiet_s=5.0)
            if args.profile and rate == args.rates[-1]:
                server.stop_profile()
                (raw.parent / "push-profile.md").write_text(summarize_profile(raw))
                result.notes.append(f"server profile: {raw.parent / 'push-profile.md'}")
            cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0) * 100
            arrivals, _ = receiver.take()
            mine = [a for a in arrivals if a.conversation_id in groups.conversations]
            lags = _lags_ms(mine)
            span = (max(a.at for a in mine) - min(a.at for a in mine)) if mine else 0.0
            result.rows.append(
                {
                    "step": f"steady {rate:g} msg/s for {args.seconds:g} s",
                    **_exactly_once(mine, expected),
                    "pushes_per_s": len(mine) / span if span else 0.0,
                    **_lag_cells(lags),
                    **_ack_cells(_acks_ms(results)),
                    "errors": merge_counters(r["errors"] for r in results),
                    "consumer_behind": behind,
                    "server_cpu_%": round(cpu),
                }
            )
            _wait_handled(server, sent_total, 60)
            result.series[f"steady {rate:g} msg/s: push lag"] = lags

        # Send acks with push off, a hanging provider and a provider down.
        refused = free_port()
        variants = (
            ("push off (no targets)", None),
            ("provider down (refused)",
             {u: f"http://127.0.0.1:{refused}/u/{u}" for u in groups.offline}),
            ("provider hanging", {u: receiver.url(u, hang=True) for u in groups.offline}),
        )  # fmt: skip
        for label, urls in variants:
            if urls is None:
                notify.unregister(groups.offline)
            else:
                notify.register(urls)
            time.sleep(1.0)
            receiver.take()
            cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
            results = _send_open(pool, groups, args.ack_rate, args.ack_seconds, args.body_bytes)
            cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - wall0) * 100
            acks = _acks_ms(results)
            sent_total += sum(r["acked"] for r in results)
            behind = sent_total - _handled(server)
            # The next variant starts once notify's consumer has caught up with this one.
            caught_up_s = _wait_handled(server, sent_total, 60)
            arrivals, held = receiver.take()
            result.rows.append(
                {
                    "step": f"acks at {args.ack_rate:g} msg/s, {label}",
                    "pushes": f"{len(arrivals)} arrived, {held} held",
                    **_ack_cells(acks),
                    "errors": merge_counters(r["errors"] for r in results),
                    "lost": sum(r["lost"] for r in results),
                    "consumer_behind": behind,
                    "caught_up_s": caught_up_s,
                    "server_cpu_%": round(cpu),
                }
            )
            result.series[f"send ack, {label}"] = acks
        result.notes.append(f"notify's push attempts over the run: {_outcomes(server)}.")
    finally:
        pool.close()
        notify.close()


def scenario_push(args: argparse.Namespace) -> Result:
    """Pushes/s and push lag for a channel's offline members and for steady group traffic with
    half the members offline; send acks with push off, a hanging and a dead provider."""
    names = ("members", "messages", "gap_s", "groups", "group_size", "rates", "seconds",
             "ack_rate", "ack_seconds", "device_interval_s", "workers", "body_bytes")  # fmt: skip
    result = Result("push", args.mode, {name: getattr(args, name) for name in names})
    result.notes.append(
        "Push lag = arrival at the bench's webhook receiver minus the message's send time (the "
        "frame written, or its scheduled time for open-loop sends), so it includes the send ack "
        "(ack_ms / ack_p50_ms beside it). The receiver answers 204 at once, plain HTTP/1.1 "
        "without TLS or signature check. CHATMESH_NOTIFY_DEVICE_INTERVAL_S="
        f"{args.device_interval_s:g}."
    )
    result.notes.append(
        "consumer_behind: message events notify's consumer had not handled yet when the last "
        "send of the step was acknowledged (from chatmesh_notify_events_total); each ack step "
        "starts after the consumer caught up with the previous one (caught_up_s)."
    )
    with _system(args) as (server, receiver):
        _channel_step(args, result, server, receiver)
        _steady_steps(args, result, server, receiver)
    steady = [r for r in result.rows if str(r["step"]).startswith("steady")]
    if steady:
        result.target("push lag p99 ms, steady load", steady[-1]["lag_p99_ms"], 1000, False)
    acks = {r["step"]: r["ack_p99_ms"] for r in result.rows if str(r["step"]).startswith("acks")}
    if len(acks) == 3:
        off, down, hanging = acks.values()
        # "as fast as with push off": within 20% (or 2 ms) of the push-off p99.
        limit = max(off * 1.2, off + 2.0)
        result.target("ack p99 ms, provider hanging (push off +20%)", hanging, limit, False)
        result.target("ack p99 ms, provider down (push off +20%)", down, limit, False)
    return result
