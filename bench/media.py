"""The `media` scenario: photo uploads through the WebSocket edge, start to READY, and the
event loop's responsiveness while the images are processed.

One ~5 MiB JPEG (a 4000x3000 picture of gradients, blobs and sensor-like noise, its quality
searched to land near `--image-mib`) is built once in memory. `--uploaders` clients, each its own
user with its own socket and HTTP client, upload it `--uploads` times in all, each as an app
does: `create_upload` frame, the bytes to the presigned URL (PUT for the fs store of `chatmesh
dev`), `complete_upload` frame, whose answer is READY with its thumbnails. Each upload is timed
from sending `create_upload` to that answer, split into create, transfer and complete.

Meanwhile a separate process holds one more socket and sends a `ping` frame every `--ping-ms`;
the gateway answers pings on the event loop that also runs media_service (one process in
`chatmesh dev`), so the round trips show whether image work ever holds that loop: decoding and
thumbnailing a 12-megapixel photo takes seconds, and a loop blocked by it would stall pings for
as long.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import multiprocessing
import multiprocessing.connection
import resource
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.media.v1 import media_service_pb2 as media_pb
from google.protobuf import json_format
from PIL import Image, ImageChops
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.report import Result, percentile
from bench.system import Admin, DevServer, raise_nofile, token

MS = 1000.0
MIB = 1024 * 1024
PINGER = "mping"
T = TypeVar("T")

ServerFrame = gateway_pb2.ServerFrame
ClientFrame = gateway_pb2.ClientFrame


# -- the image ----------------------------------------------------------------------------------


def _picture(width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth gradients, large soft blobs and fine per-pixel noise, so
    that JPEG spends about as many bytes on it as on a detailed camera photo."""
    size = (width, height)
    noise = Image.effect_noise(size, 48)
    blobs = Image.effect_noise((max(1, width // 50), max(1, height // 50)), 90)
    blobs = blobs.resize(size, Image.Resampling.BICUBIC)
    linear = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    bases = (linear, radial, linear.transpose(Image.Transpose.ROTATE_180))
    channels = [
        Image.blend(Image.blend(base, blobs, 0.5), ImageChops.offset(noise, 97 * k, 61 * k), 0.35)
        for k, base in enumerate(bases)
    ]
    return Image.merge("RGB", channels)


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_jpeg(width: int, height: int, target_bytes: int) -> tuple[bytes, int]:
    """The JPEG (and its quality) whose size is closest to `target_bytes`, by bisection."""
    image = _picture(width, height)
    low, high = 40, 97
    best: tuple[bytes, int] | None = None
    while low <= high:
        quality = (low + high) // 2
        data = _encode(image, quality)
        if best is None or abs(len(data) - target_bytes) < abs(len(best[0]) - target_bytes):
            best = (data, quality)
        if len(data) < target_bytes:
            low = quality + 1
        else:
            high = quality - 1
    assert best is not None
    return best


def _pixels(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


# -- one socket, one request at a time ----------------------------------------------------------


def _parse(message: str | bytes) -> gateway_pb2.ServerFrame:
    """A server frame: binary protobuf, or proto3 JSON (the `ready` frame, sent before the
    gateway knows the client speaks binary)."""
    if isinstance(message, bytes):
        return ServerFrame.FromString(message)
    frame = ServerFrame()
    json_format.Parse(message, frame)
    return frame


async def _open(url: str, user: str) -> ClientConnection:
    ws = await connect(
        url,
        subprotocols=[Subprotocol("chatmesh.v1"), Subprotocol(f"bearer.{token(user)}")],
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=2,
    )
    ready = _parse(await asyncio.wait_for(ws.recv(), 30))
    if ready.WhichOneof("frame") != "ready":
        await ws.close()
        raise RuntimeError(f"expected ready, got {ready}")
    return ws


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class _Client:
    ws: ClientConnection
    ids: int = 0

    async def call(self, kind: str, **fields: Any) -> ServerFrame:
        self.ids += 1
        rid = f"r{self.ids}"
        frame = ClientFrame(request_id=rid)
        body = getattr(frame, kind)
        for name, value in fields.items():
            setattr(body, name, value)
        await self.ws.send(frame.SerializeToString())
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 60)
            answer = _parse(raw)
            if answer.request_id != rid:
                continue  # pushed frames (none expected: the uploaders do not resume)
            if answer.WhichOneof("frame") == "error":
                code = gateway_pb2.ErrorCode.Name(answer.error.code)
                raise FrameError(code, answer.error.message)
            return answer


# -- uploaders ----------------------------------------------------------------------------------


@dataclass
class Uploads:
    """What the uploaders measured (seconds; `started` / `ended` are unix times)."""

    total: list[float] = field(default_factory=list)
    create: list[float] = field(default_factory=list)
    transfer: list[float] = field(default_factory=list)
    complete: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0

    @property
    def ready(self) -> int:
        return len(self.total)


async def _put(http: httpx.AsyncClient, upload: media_pb.PresignedUpload, data: bytes) -> int:
    if upload.method == "PUT":
        reply = await http.put(upload.url, content=data, headers=dict(upload.headers))
    else:
        reply = await http.post(upload.url, data=dict(upload.fields), files={"file": data})
    return reply.status_code


async def _upload_one(
    client: _Client, http: httpx.AsyncClient, cid: str, data: bytes, n: int, into: Uploads
) -> None:
    t0 = time.perf_counter()
    created = await client.call(
        "create_upload",
        conversation_id=cid,
        file_name=f"photo-{n}.jpg",
        size_bytes=len(data),
        content_type="image/jpeg",
    )
    t1 = time.perf_counter()
    status = await _put(http, created.create_upload.upload, data)
    if status not in (200, 201, 204):
        into.errors[f"http {status}"] += 1
        return
    t2 = time.perf_counter()
    done = await client.call("complete_upload", media_id=created.create_upload.media.media_id)
    t3 = time.perf_counter()
    media = done.complete_upload.media
    if media.state != media_pb.MEDIA_STATE_READY:
        into.errors[f"rejected {media.reject_reason}"] += 1
        return
    if not {"small", "large"} <= set(media.attachment.thumbnails):
        into.errors["no thumbnails"] += 1
        return
    into.create.append(t1 - t0)
    into.transfer.append(t2 - t1)
    into.complete.append(t3 - t2)
    into.total.append(t3 - t0)


async def _uploaders(
    url: str, users: Sequence[str], cid: str, data: bytes, uploads: int
) -> Uploads:
    """`len(users)` uploaders in a closed loop until `uploads` uploads have been made."""
    result = Uploads()
    clients = [_Client(await _open(url, u)) for u in users]
    remaining = uploads
    taken = 0

    async def run(client: _Client, http: httpx.AsyncClient) -> None:
        nonlocal remaining, taken
        while remaining > 0:
            remaining -= 1
            taken += 1
            try:
                await _upload_one(client, http, cid, data, taken, result)
            except FrameError as exc:
                result.errors[exc.code] += 1
            except (httpx.HTTPError, ConnectionClosed, TimeoutError) as exc:
                result.errors[type(exc).__name__] += 1

    timeout = httpx.Timeout(60.0)
    cpu = _cpu_seconds()
    try:
        async with contextlib.AsyncExitStack() as stack:
            https = [
                await stack.enter_async_context(httpx.AsyncClient(timeout=timeout)) for _ in clients
            ]
            result.started = time.time()
            await asyncio.gather(*(run(c, h) for c, h in zip(clients, https, strict=True)))
            result.ended = time.time()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.ws.close()
    result.cpu_s = _cpu_seconds() - cpu
    return result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- the pinger (its own process, so the uploaders' client work does not delay it) ---------------


async def _ping(
    pipe: multiprocessing.connection.Connection, url: str, interval_s: float
) -> dict[str, Any]:
    ws = await _open(url, PINGER)
    sent_at: dict[str, float] = {}
    sent, rtt = array("d"), array("d")
    answered = asyncio.Event()  # set whenever no ping is waiting for its pong

    async def read() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.time()
                frame = _parse(raw)
                began = sent_at.pop(frame.request_id, None)
                if began is not None and frame.WhichOneof("frame") == "pong":
                    sent.append(began)
                    rtt.append(now - began)
                if not sent_at:
                    answered.set()

    reader = asyncio.get_running_loop().create_task(read())
    stop = asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    pipe.send({"ready": True})
    cpu = _cpu_seconds()
    n = 0
    next_at = time.monotonic()
    while not stop.done():
        n += 1
        frame = ClientFrame(request_id=f"p{n}")
        frame.ping.SetInParent()
        sent_at[frame.request_id] = time.time()
        await ws.send(frame.SerializeToString())
        next_at += interval_s
        # A late ping is sent at once; the schedule does not drift.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stop), max(0.0, next_at - time.monotonic()))
    if sent_at:
        answered.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), 10)
    await ws.close()
    reader.cancel()
    return {
        "sent": sent.tobytes(),
        "rtt": rtt.tobytes(),
        "lost": len(sent_at),
        "cpu_s": _cpu_seconds() - cpu,
    }


def _pinger_main(pipe: multiprocessing.connection.Connection, url: str, interval_s: float) -> None:
    try:
        result = _run_loop(_ping(pipe, url, interval_s))
    except Exception as exc:
        result = {"exception": repr(exc)}
    pipe.send(result)


class Pinger:
    """A process pinging the gateway every `interval_s` from start until `stop()`."""

    def __init__(self, url: str, interval_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_pinger_main, args=(child, url, interval_s), daemon=True)
        self._proc.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the pinger did not connect within 60 s")
        first = self._pipe.recv()
        if "exception" in first:
            raise RuntimeError(f"pinger: {first['exception']}")

    def stop(self) -> tuple[list[tuple[float, float]], int, float]:
        """(send time, round trip) of every answered ping, how many went unanswered, CPU s."""
        self._pipe.send("stop")
        if not self._pipe.poll(60):
            raise RuntimeError("the pinger did not stop within 60 s")
        result: dict[str, Any] = self._pipe.recv()
        self._proc.join(10)
        if "exception" in result:
            raise RuntimeError(f"pinger: {result['exception']}")
        sent, rtt = array("d"), array("d")
        sent.frombytes(result["sent"])
        rtt.frombytes(result["rtt"])
        return list(zip(sent, rtt, strict=True)), result["lost"], result["cpu_s"]

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# -- the scenario -------------------------------------------------------------------------------


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[DevServer]:
    raise_nofile(args.nofile)
    with tempfile.TemporaryDirectory(prefix="chatmesh-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = DevServer(data_dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _ms(values: Sequence[float]) -> list[float]:
    return [v * MS for v in values]


def _pings(samples: Sequence[tuple[float, float]], start: float, end: float) -> list[float]:
    return [rtt * MS for sent, rtt in samples if start <= sent < end]


def _ping_cells(rtts: Sequence[float]) -> dict[str, Any]:
    return {
        "ping_p50_ms": percentile(rtts, 50),
        "ping_p99_ms": percentile(rtts, 99),
        "ping_max_ms": max(rtts) if rtts else float("nan"),
        "pings": len(rtts),
    }


def _upload_row(
    label: str, uploaders: int, planned: int, got: Uploads, server_cpu_s: float
) -> dict[str, Any]:
    wall = max(1e-9, got.ended - got.started)
    total, create = _ms(got.total), _ms(got.create)
    transfer, complete = _ms(got.transfer), _ms(got.complete)
    return {
        "step": label,
        "uploaders": uploaders,
        "ready": f"{got.ready} / {planned}",
        "completions_per_s": got.ready / wall,
        "p50_ms": percentile(total, 50),
        "p99_ms": percentile(total, 99),
        "max_ms": max(total) if total else float("nan"),
        "create_p50_ms": percentile(create, 50),
        "create_p99_ms": percentile(create, 99),
        "transfer_p50_ms": percentile(transfer, 50),
        "transfer_p99_ms": percentile(transfer, 99),
        "complete_p50_ms": percentile(complete, 50),
        "complete_p99_ms": percentile(complete, 99),
        "errors": dict(got.errors),
        "server_cpu_%": round(server_cpu_s / wall * 100),
        "loadgen_cpu_%": round(got.cpu_s / wall * 100),
    }


def scenario_media(args: argparse.Namespace) -> Result:
    """A ~5 MiB JPEG, create_upload to READY (thumbnails included) p50/p99, completions/s with
    `--uploaders` concurrent uploaders, and ping round trips on the gateway while it runs."""
    width, height = _pixels(args.image_px)
    params = {
        name: getattr(args, name)
        for name in ("uploads", "uploaders", "image_px", "image_mib", "ping_ms", "idle_ping_s")
    }
    result = Result("media", args.mode, params)
    began = time.perf_counter()
    data, quality = make_jpeg(width, height, int(args.image_mib * MIB))
    params["image_bytes"] = len(data)
    params["image_quality"] = quality
    result.notes.append(
        f"One {width}x{height} JPEG of {len(data) / MIB:.2f} MiB (quality {quality}; built in "
        f"{time.perf_counter() - began:.1f} s), uploaded {args.uploads} times by "
        f"{args.uploaders} uploaders (one user, socket and HTTP client each) through the "
        "WebSocket edge and the fs store's presigned PUT of `chatmesh dev`. Each upload is "
        "timed from sending create_upload to the READY answer of complete_upload "
        "(create = until the presigned URL, transfer = the PUT, complete = processing: sniff, "
        "scan, decode, re-encode without metadata, two thumbnails, blurhash, writes)."
    )
    result.notes.append(
        f"Pings: a separate process sends a `ping` frame every {args.ping_ms:g} ms on its own "
        "socket; the gateway answers it on the event loop that also runs media_service. Identical "
        "bytes share one stored object, so after the first upload the writes of the cleaned "
        "original and thumbnails are skipped (the processing is not)."
    )
    users = [f"m{i}" for i in range(args.uploaders)]
    with _server(args) as server:
        admin = Admin(server.grpc_target)
        try:
            cid = admin.create(users[0], users[1:])
        finally:
            admin.close()
        pinger = Pinger(server.ws_url, args.ping_ms / MS)
        pinger_began = time.perf_counter()
        try:
            idle_start = time.time()
            time.sleep(args.idle_ping_s)
            idle_end = time.time()
            # The first upload warms the server (imports, thread pools, HTTP connection); one
            # more alone is an image's cost without queueing behind others.
            steps: list[tuple[str, int, int, Uploads, float]] = []
            for label, uploaders, uploads in (
                ("first upload (cold)", 1, 1),
                ("1 upload alone", 1, 1),
                (f"{args.uploaders} uploaders", args.uploaders, args.uploads),
            ):
                time.sleep(0.5)
                cpu0 = server.cpu_seconds()
                got = _run_loop(_uploaders(server.ws_url, users[:uploaders], cid, data, uploads))
                steps.append((label, uploaders, uploads, got, server.cpu_seconds() - cpu0))
            samples, lost, pinger_cpu = pinger.stop()
            pinger_wall = time.perf_counter() - pinger_began
        finally:
            pinger.close()
    idle = _pings(samples, idle_start, idle_end)
    for label, uploaders, uploads, got, server_cpu in steps:
        row = _upload_row(label, uploaders, uploads, got, server_cpu)
        row.update(_ping_cells(_pings(samples, got.started, got.ended)))
        result.rows.append(row)
    result.rows.insert(0, {**dict.fromkeys(result.rows[0]), "step": "idle (no uploads)",
                           **_ping_cells(idle)})  # fmt: skip
    result.notes.append(
        f"loadgen_cpu_% is the uploaders' process; the pinger process used "
        f"{pinger_cpu / max(1e-9, pinger_wall) * 100:.0f}% of a core over its {pinger_wall:.0f} s."
    )
    if lost:
        result.notes.append(f"{lost} pings were never answered")
    loaded = steps[-1][3]
    during = _pings(samples, loaded.started, loaded.ended)
    result.series[f"upload start to ready, {args.uploaders} uploaders"] = _ms(loaded.total)
    result.series["ping round trip, idle"] = idle
    result.series["ping round trip, during uploads"] = during
    result.target(
        "ping p99 ms during uploads (image work off the event loop)",
        percentile(during, 99),
        100,
        False,
    )
    return result
