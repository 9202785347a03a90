"""Load-generator processes: each holds many device sockets and runs the coordinator's commands.

A worker is a separate process (multiprocessing, spawn) with its own uvloop event loop. It
connects its devices to the gateway with the subprotocol token (`chatmesh.v1` + `bearer.<jwt>`),
then speaks either binary protobuf frames or, as browsers do, proto3 JSON on text frames (built
and read as plain JSON objects, the way a web app's `JSON.stringify` / `JSON.parse` would, so
the load generator does not pay for the generic proto3-JSON codec). One reader task per socket
sorts what arrives:

* answers (by request_id): ack latency, measured from the *intended* send time of an open-loop
  schedule (so a late load generator shows up as latency, not as a lower offered rate), or from
  the actual send time for closed-loop requests;
* `event` frames of messages sent by the bench (body `b|<unix time>|...`) from another user:
  the send time and the receipt time, for end-to-end latency and fanout completion.

Commands arrive over a Pipe as (name, kwargs) and are answered with a dict; every answer carries
the CPU seconds the worker spent on it, so the report can show the CPU split honestly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import resource
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.system import raise_nofile, token

ServerFrame = gateway_pb2.ServerFrame
ClientFrame = gateway_pb2.ClientFrame

# (intended or actual send time, waiter or None, where the latency goes)
_Pending = tuple[float, "asyncio.Future[bool] | None", array]  # type: ignore[type-arg]


@dataclass(frozen=True, slots=True)
class Device:
    user: str
    device: str = "d0"


def bench_body(body_bytes: int, sent: float) -> str:
    """A message body carrying its (scheduled) send time, padded to about `body_bytes`."""
    head = f"b|{sent:.6f}|"
    return head + "x" * max(0, body_bytes - len(head))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Conn:
    __slots__ = ("closed", "ids", "pending", "reader", "user", "ws")

    def __init__(self, ws: ClientConnection, user: str) -> None:
        self.ws = ws
        self.user = user
        self.ids = 0
        self.pending: dict[str, _Pending] = {}
        self.reader: asyncio.Task[None] | None = None
        self.closed = False

    def next_id(self) -> str:
        self.ids += 1
        return f"q{self.ids}"


class Worker:
    """The sockets of one load-generator process."""

    def __init__(
        self, url: str, devices: Sequence[Device], index: int, binary: bool = True
    ) -> None:
        self.url = url
        self.devices = list(devices)
        self.index = index
        self.binary = binary
        self.conns: list[_Conn] = []
        self.ack_lat = array("d")
        self.send_lag = array("d")
        self.req_lat = array("d")
        self.errors: Counter[str] = Counter()
        self.recording = False
        self.deliv_sent = array("d")
        self.deliv_recv = array("d")
        self.disconnects = 0
        # When the last successful answer arrived (open loop: acks/s over the time they took).
        self.last_answer_at = 0.0

    # -- connecting -------------------------------------------------------------------------

    async def connect(self, subscribe: bool, concurrency: int = 100) -> dict[str, Any]:
        """Connects every device (waits for `ready`); with `subscribe`, sends `resume` and
        waits for `resumed`, so the device's event stream is live when this returns."""
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        failures: Counter[str] = Counter()

        async def one(device: Device) -> _Conn | None:
            async with gate:
                try:
                    return await self._open(device, subscribe)
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    return None

        opened = await asyncio.gather(*(one(d) for d in self.devices))
        self.conns = [c for c in opened if c is not None]
        return {
            "connected": len(self.conns),
            "failed": dict(failures),
            "seconds": time.perf_counter() - started,
        }

    async def _open(self, device: Device, subscribe: bool) -> _Conn:
        ws = await connect(
            self.url,
            subprotocols=[
                Subprotocol("chatmesh.v1"),
                Subprotocol(f"bearer.{token(device.user, device.device)}"),
            ],
            compression=None,
            max_size=None,
            # The server pings every heartbeat interval and websockets answers by itself; the
            # client sends no pings of its own.
            ping_interval=None,
            open_timeout=120,
            close_timeout=2,
        )
        first = await asyncio.wait_for(ws.recv(), 60)
        ready = ServerFrame()
        if isinstance(first, bytes):
            ready.ParseFromString(first)
        else:
            json_format.Parse(first, ready)
        if ready.WhichOneof("frame") != "ready":
            await ws.close()
            raise RuntimeError(f"expected ready, got {ready}")
        conn = _Conn(ws, device.user)
        if subscribe:
            frame = ClientFrame(request_id="resume")
            frame.resume.SetInParent()
            await ws.send(frame.SerializeToString() if self.binary else _dumps(frame))
            answer = _parse_any(await asyncio.wait_for(ws.recv(), 60))
            if answer.WhichOneof("frame") != "resumed":
                await ws.close()
                raise RuntimeError(f"expected resumed, got {answer}")
        conn.reader = asyncio.get_running_loop().create_task(
            self._read(conn) if self.binary else self._read_json(conn)
        )
        return conn

    async def _read_json(self, conn: _Conn) -> None:
        """The reader of a JSON socket: frames as plain objects (proto3 JSON field names)."""
        loads = json.loads
        try:
            async for message in conn.ws:
                now = time.time()
                frame = loads(message)
                rid = frame.get("requestId")
                if rid:
                    error = frame.get("error")
                    code = None if error is None else error.get("code", "ERROR_CODE_UNSPECIFIED")
                    self._answered(conn, rid, code, now)
                    continue
                if not self.recording:
                    continue
                created = frame.get("event", {}).get("messageCreated")
                if created is None:
                    continue
                message_obj = created.get("message", {})
                body = message_obj.get("body", "")
                if message_obj.get("senderId") == conn.user or not body.startswith("b|"):
                    continue
                self.deliv_sent.append(float(body[2 : body.index("|", 2)]))
                self.deliv_recv.append(now)
        except ConnectionClosed:
            pass
        finally:
            self._reader_ended(conn)

    def _answered(self, conn: _Conn, request_id: str, error_code: str | None, now: float) -> None:
        """A request's answer, from either encoding: its latency, or its error counted."""
        entry = conn.pending.pop(request_id, None)
        if entry is None:
            return
        sent, waiter, sink = entry
        if error_code is not None:
            self.errors[error_code] += 1
        else:
            sink.append(now - sent)
            self.last_answer_at = now
        if waiter is not None and not waiter.done():
            waiter.set_result(error_code is None)

    def _reader_ended(self, conn: _Conn) -> None:
        conn.closed = True
        self.disconnects += 1
        for _sent, waiter, _sink in conn.pending.values():
            if waiter is not None and not waiter.done():
                waiter.set_result(False)

    async def _read(self, conn: _Conn) -> None:
        parse = ServerFrame.FromString
        try:
            async for message in conn.ws:
                now = time.time()
                frame = parse(message) if isinstance(message, bytes) else _parse_text(message)
                rid = frame.request_id
                if rid:
                    failed = frame.WhichOneof("frame") == "error"
                    code = gateway_pb2.ErrorCode.Name(frame.error.code) if failed else None
                    self._answered(conn, rid, code, now)
                    continue
                if not self.recording or frame.WhichOneof("frame") != "event":
                    continue
                event = frame.event
                if event.WhichOneof("payload") != "message_created":
                    continue
                message_pb = event.message_created.message
                body = message_pb.body
                if message_pb.sender_id == conn.user or not body.startswith("b|"):
                    continue
                self.deliv_sent.append(float(body[2 : body.index("|", 2)]))
                self.deliv_recv.append(now)
        except ConnectionClosed:
            pass
        finally:
            self._reader_ended(conn)

    # -- requests ---------------------------------------------------------------------------

    async def _send_message(
        self,
        conn: _Conn,
        conversation_id: str,
        sent: float,
        body_bytes: int,
        waiter: asyncio.Future[bool] | None = None,
    ) -> None:
        rid = conn.next_id()
        client_msg_id = f"{self.index}-{rid}"
        body = bench_body(body_bytes, sent)
        payload: str | bytes
        if self.binary:
            frame = ClientFrame(request_id=rid)
            send = frame.send_message
            send.conversation_id = conversation_id
            send.client_msg_id = client_msg_id
            send.body = body
            payload = frame.SerializeToString()
        else:
            payload = json.dumps(
                {
                    "requestId": rid,
                    "sendMessage": {
                        "conversationId": conversation_id,
                        "clientMsgId": client_msg_id,
                        "body": body,
                    },
                },
                separators=(",", ":"),
            )
        conn.pending[rid] = (sent, waiter, self.ack_lat)
        try:
            await conn.ws.send(payload)
        except ConnectionClosed:
            conn.pending.pop(rid, None)
            self.errors["closed"] += 1
            if waiter is not None and not waiter.done():
                waiter.set_result(False)

    async def _drain(self, timeout_s: float) -> int:
        """Waits for answers to everything sent; returns how many never came."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(c.pending for c in self.conns if not c.closed):
                return 0
            await asyncio.sleep(0.02)
        lost = sum(len(c.pending) for c in self.conns)
        for c in self.conns:
            c.pending.clear()
        return lost

    async def send_open(
        self,
        targets: Sequence[tuple[int, str]],
        rate: float,
        duration_s: float,
        start_at: float,
        body_bytes: int,
    ) -> dict[str, Any]:
        """Open loop: sends at `rate` per second for `duration_s`, round-robin over `targets`
        ((socket index, conversation id)); latency counts from each send's scheduled time."""
        self.ack_lat = array("d")
        self.send_lag = array("d")
        self.errors.clear()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        conns = self.conns
        total = int(rate * duration_s)
        t0 = time.time()
        i = 0
        while i < total:
            due = min(total, int((time.time() - t0) * rate) + 1)
            while i < due:
                intended = t0 + i / rate
                index, cid = targets[i % len(targets)]
                self.send_lag.append(time.time() - intended)
                await self._send_message(conns[index], cid, intended, body_bytes)
                i += 1
            delay = t0 + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_for = time.time() - t0
        lost = await self._drain(15.0)
        return {
            "sent": total,
            "acked": len(self.ack_lat),
            "lost": lost,
            "errors": dict(self.errors),
            "send_seconds": sent_for,
            # From the first scheduled send to the last ack: past saturation acks trail the
            # schedule, and this is what the server kept up with.
            "ack_seconds": max(sent_for, self.last_answer_at - t0),
            "ack_lat": self.ack_lat.tobytes(),
            "send_lag": self.send_lag.tobytes(),
        }

    async def send_closed(
        self,
        targets: Sequence[tuple[int, str]],
        duration_s: float,
        start_at: float,
        body_bytes: int,
        per_target_rate: float,
    ) -> dict[str, Any]:
        """Closed loop: each target sends, waits for its ack, sends again (at most
        `per_target_rate` per second, under the gateway's per-user limit). Counts acks that
        arrive within the window."""
        self.ack_lat = array("d")
        self.errors.clear()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        loop = asyncio.get_running_loop()
        end = time.time() + duration_s
        gap = 1.0 / per_target_rate
        in_window = 0

        async def run(index: int, cid: str) -> None:
            nonlocal in_window
            conn = self.conns[index]
            next_at = time.time()
            while not conn.closed:
                now = time.time()
                if now >= end:
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at = max(next_at + gap, time.time())
                waiter: asyncio.Future[bool] = loop.create_future()
                await self._send_message(conn, cid, time.time(), body_bytes, waiter)
                ok = await waiter
                if ok and time.time() <= end:
                    in_window += 1

        began = time.time()
        await asyncio.gather(*(run(i, c) for i, c in targets))
        return {
            "acked_in_window": in_window,
            "window_s": end - began,
            "errors": dict(self.errors),
            "ack_lat": self.ack_lat.tobytes(),
        }

    async def send_one(self, index: int, conversation_id: str, body_bytes: int) -> dict[str, Any]:
        """One send (a fanout probe); returns its send time and ack latency."""
        self.ack_lat = array("d")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        sent = time.time()
        await self._send_message(self.conns[index], conversation_id, sent, body_bytes, waiter)
        ok = await asyncio.wait_for(waiter, 30)
        return {"sent_at": sent, "ok": ok, "ack_s": self.ack_lat[0] if ok else None}

    async def history(
        self, index: int, conversation_id: str, requests: int, concurrency: int, limit: int
    ) -> dict[str, Any]:
        """Newest-page reads (`get_history` with no cursor), `concurrency` at a time."""
        self.req_lat = array("d")
        self.errors.clear()
        conn = self.conns[index]
        loop = asyncio.get_running_loop()
        remaining = requests

        async def run() -> None:
            nonlocal remaining
            while remaining > 0 and not conn.closed:
                remaining -= 1
                rid = conn.next_id()
                frame = ClientFrame(request_id=rid)
                frame.get_history.conversation_id = conversation_id
                frame.get_history.limit = limit
                waiter: asyncio.Future[bool] = loop.create_future()
                payload = frame.SerializeToString() if self.binary else _dumps(frame)
                conn.pending[rid] = (time.time(), waiter, self.req_lat)
                await conn.ws.send(payload)
                await waiter

        began = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(concurrency)))
        return {
            "seconds": time.perf_counter() - began,
            "errors": dict(self.errors),
            "lat": self.req_lat.tobytes(),
        }

    # -- deliveries -------------------------------------------------------------------------

    async def record(self) -> dict[str, Any]:
        self.deliv_sent = array("d")
        self.deliv_recv = array("d")
        self.recording = True
        return {}

    async def collect(self, stop: bool = True) -> dict[str, Any]:
        """(send time, receipt time) of every bench message received since the last collect;
        `stop` ends the recording."""
        if stop:
            self.recording = False
        sent, recv = self.deliv_sent, self.deliv_recv
        self.deliv_sent, self.deliv_recv = array("d"), array("d")
        return {"sent": sent.tobytes(), "recv": recv.tobytes(), "disconnects": self.disconnects}

    async def status(self) -> dict[str, Any]:
        return {
            "open": sum(1 for c in self.conns if not c.closed),
            "disconnects": self.disconnects,
        }

    async def close(self) -> dict[str, Any]:
        async def one(conn: _Conn) -> None:
            with contextlib.suppress(Exception):
                await conn.ws.close()
            if conn.reader is not None:
                conn.reader.cancel()

        gate = asyncio.Semaphore(500)

        async def gated(conn: _Conn) -> None:
            async with gate:
                await one(conn)

        await asyncio.gather(*(gated(c) for c in self.conns))
        self.conns = []
        return {}


def _parse_text(message: str) -> gateway_pb2.ServerFrame:
    frame = ServerFrame()
    json_format.Parse(message, frame)
    return frame


def _parse_any(message: str | bytes) -> gateway_pb2.ServerFrame:
    return ServerFrame.FromString(message) if isinstance(message, bytes) else _parse_text(message)


def _dumps(frame: gateway_pb2.ClientFrame) -> str:
    """A ClientFrame as proto3 JSON text (set-up frames; the hot send frame is built by hand)."""
    return json.dumps(json_format.MessageToDict(frame), separators=(",", ":"))


def floats(raw: bytes) -> array:  # type: ignore[type-arg]
    values = array("d")
    values.frombytes(raw)
    return values


# -- the process side ---------------------------------------------------------------------------


async def _serve(pipe: multiprocessing.connection.Connection, worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    while True:
        name, kwargs = await loop.run_in_executor(None, pipe.recv)
        if name == "exit":
            pipe.send({})
            return
        cpu = _cpu_seconds()
        try:
            result = await getattr(worker, name)(**kwargs)
        except Exception:
            result = {"exception": traceback.format_exc()}
        result["cpu_s"] = _cpu_seconds() - cpu
        pipe.send(result)


def _main(
    pipe: multiprocessing.connection.Connection,
    url: str,
    devices: list[Device],
    index: int,
    nofile: int,
    binary: bool,
) -> None:
    raise_nofile(nofile)
    worker = Worker(url, devices, index, binary)
    try:
        import uvloop

        uvloop.run(_serve(pipe, worker))
    except ImportError:
        asyncio.run(_serve(pipe, worker))


class WorkerError(RuntimeError):
    pass


class Pool:
    """Load-generator processes, one per device list; `call` runs a command on all of them."""

    def __init__(
        self,
        url: str,
        device_lists: Sequence[Sequence[Device]],
        nofile: int,
        binary: bool = True,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for index, devices in enumerate(device_lists):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_main, args=(child, url, list(devices), index, nofile, binary), daemon=True
            )
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def __len__(self) -> int:
        return len(self._pipes)

    def call(self, name: str, per_worker: Sequence[dict[str, Any]] | None = None, **kwargs: Any
             ) -> list[dict[str, Any]]:  # fmt: skip
        """Runs `name` on every worker (per-worker kwargs, or the same kwargs) and waits."""
        for i, pipe in enumerate(self._pipes):
            pipe.send((name, per_worker[i] if per_worker is not None else kwargs))
        results = [pipe.recv() for pipe in self._pipes]
        for result in results:
            if "exception" in result:
                raise WorkerError(result["exception"])
        return results

    def call_one(self, worker: int, name: str, **kwargs: Any) -> dict[str, Any]:
        self._pipes[worker].send((name, kwargs))
        result: dict[str, Any] = self._pipes[worker].recv()
        if "exception" in result:
            raise WorkerError(result["exception"])
        return result

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                pipe.send(("close", {}))
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                if pipe.poll(30):
                    pipe.recv()
                pipe.send(("exit", {}))
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
