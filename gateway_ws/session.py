"""One WebSocket connection: authentication, request frames, the event stream, the outbound queue.

A session owns, besides the handler task websockets runs it in:

* a writer task that drains a bounded queue of encoded frames into the socket, so that nothing
  that produces frames (request tasks, the event stream) ever waits on a slow client. A queue
  past `outbound_queue_max`, or one write blocked for `send_stall_timeout_s`, closes the socket
  with 4008 (slow consumer); the app reconnects and resumes;
* once started, one `EventService.SubscribeEvents` stream, read by one task that turns each event
  into a frame on the queue (no task per event). Live signals (seq 0: receipts, creations, typing
  as `typing_changed`) come the same way, so typing needs no presence subscription. The session
  tracks the highest seq it delivered per conversation and, when the stream breaks, subscribes
  again from those seqs, so the device sees no gap;
* a task per request frame in flight (at most `max_inflight_requests`), so one slow call never
  holds up another;
* with presence enabled (`presence_target`): one presence connection (`Connect` when
  authenticated, `Disconnect` at the end) kept alive by the gateway-wide heartbeat loop
  (gateway_ws/presence.py, no task per socket), and, only while the socket watches users
  (`presence_subscribe`), one `PresenceService.Watch` stream read by one task that turns its
  items into `presence_event` frames on the same queue. Presence is best effort: its failures
  are logged and never close the socket.

The gateway is never the source of truth: chat_service checks the forwarded token and the
caller's rights on every call and every stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, cast

import grpc
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import event_service_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb
from prometheus_client import Counter
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.headers import parse_subprotocol
from websockets.protocol import State

from chatmesh_common.auth import Identity, TokenError, TokenVerifier
from chatmesh_common.clock import Clock
from chatmesh_common.metrics import WS_CONNECTIONS, WS_FRAMES
from gateway_ws import frames
from gateway_ws.config import GatewayConfig
from gateway_ws.frames import Encoded, ErrorCode, FrameError
from gateway_ws.presence import (
    CONNECT_TIMEOUT_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DISCONNECT_TIMEOUT_S,
    HEARTBEAT_TIMEOUT_S,
    PresenceMethods,
    validate_user_ids,
)
from gateway_ws.ratelimit import BadFrameCounter, RateLimiter
from gateway_ws.upstream import Route, SubscribeMethod

log = logging.getLogger(__name__)

# Close codes (see gateway_ws/server.py for the full list).
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_SLOW_CONSUMER: Final = 4008
# A socket that sends nothing after authenticating gets a live-only event stream after this
# long; one whose first frame is `resume` (sent at once) gets its replay first instead.
IDLE_LIVE_START_S: Final = 1.0

# Stream errors that retrying cannot fix; the others (UNAVAILABLE, a chat_service restart, ...)
# resubscribe with backoff.
_FATAL_STREAM_CODES: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_RETRY_AFTER_KEYS: Final = ("retry-after-ms", "x-retry-after-ms")
# Frames served by presence_service (presence_target); UNIMPLEMENTED when it is not configured.
_PRESENCE_FRAMES: Final = frozenset(
    {"presence_subscribe", "presence_unsubscribe", "set_status", "typing"}
)
# The end-of-stream sentinel of grpc.aio (missing from the type stubs).
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]


class FrameMetrics:
    """Cached children of the frame and connection counters (a labels() lookup takes a lock)."""

    def __init__(self, frames_total: Counter = WS_FRAMES, conns: Counter = WS_CONNECTIONS) -> None:
        self._frames_total = frames_total
        self._connections = conns
        self._children: dict[tuple[str, str], Counter] = {}

    def frame(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._frames_total.labels(kind, outcome)
        child.inc()

    def connection_closed(self, code: int | None) -> None:
        self._connections.labels(str(code if code is not None else 1006)).inc()


@dataclass(eq=False)
class GatewayContext:
    """What every session shares: built once per gateway by server.start_gateway."""

    config: GatewayConfig
    clock: Clock
    verifier: TokenVerifier
    send_limiter: RateLimiter
    routes: dict[str, Route]
    subscribe: SubscribeMethod
    metrics: FrameMetrics
    # PresenceService, or None when presence is disabled (empty presence_target).
    presence: PresenceMethods | None = None
    # How often each socket heartbeats (the last ConnectResponse.heartbeat_interval).
    presence_heartbeat_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    sessions: set[Session] = field(default_factory=set)
    # Event frames encoded once per event and encoding for all sockets.
    event_frames: frames.EventFrames = field(default_factory=frames.EventFrames)


class Session:
    """The gateway's half of one WebSocket connection."""

    __slots__ = (
        "_bad",
        "_binary",
        "_close_task",
        "_closing",
        "_conn_id",
        "_connect_task",
        "_ctx",
        "_device_id",
        "_hb_due",
        "_hb_task",
        "_idle_since",
        "_inflight",
        "_live_timer",
        "_loop",
        "_metadata",
        "_out",
        "_out_batch",
        "_pending_resumes",
        "_pstatus",
        "_psubs",
        "_send_started",
        "_sub_started",
        "_sub_task",
        "_tracked",
        "_user_id",
        "_wakeup",
        "_watch_task",
        "_writer",
        "_ws",
    )

    def __init__(self, ctx: GatewayContext, ws: ServerConnection) -> None:
        self._ctx = ctx
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._user_id = ""
        self._device_id = ""
        self._metadata: tuple[tuple[str, str], ...] = ()
        # The encoding of the last client frame; pushed events follow it.
        self._binary = False
        self._bad: BadFrameCounter | None = None
        # Outbound queue: frames not taken by the writer yet, and how many of the batch it took
        # are still unsent. The writer task runs while there is traffic (see _write_loop).
        self._out: list[Encoded] = []
        self._out_batch = 0
        # Resolved True to wake the writer, False to retire it.
        self._wakeup: asyncio.Future[bool] | None = None
        self._writer: asyncio.Task[None] | None = None
        # loop.time() when the current write started / the writer went idle; 0.0 when not.
        self._send_started = 0.0
        self._idle_since = 0.0
        # (code, reason, flush first) once the session decided to close the socket.
        self._closing: tuple[int, str, bool] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Event stream: started by the first frame after authentication, or live-only once the
        # socket has been quiet for IDLE_LIVE_START_S (an app that never sends still gets events).
        self._sub_started = False
        self._live_timer: asyncio.TimerHandle | None = None
        self._sub_task: asyncio.Task[None] | None = None
        # Highest seq delivered per conversation, the cursors of every resubscription.
        self._tracked: dict[str, int] = {}
        # (request_id, binary) of resume requests waiting for the stream's caught_up marker.
        self._pending_resumes: list[tuple[str, bool]] = []
        # Presence (only with ctx.presence): the connection id ("" before authentication), the
        # status last learned, when the next heartbeat is due (loop.time(); 0.0: not scheduled
        # yet, -1.0: torn down),
        # the Connect / heartbeat calls in flight, the watched users (None: none) and their Watch.
        self._conn_id = ""
        self._pstatus: presence_pb.UserStatus = presence_pb.USER_STATUS_UNSPECIFIED
        self._hb_due = 0.0
        self._connect_task: asyncio.Task[None] | None = None
        self._hb_task: asyncio.Task[None] | None = None
        self._psubs: set[str] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serves the connection until it closes; websockets runs this as the handler."""
        ctx = self._ctx
        ctx.sessions.add(self)
        try:
            if await self._authenticate():
                await self._serve()
        except ConnectionClosed:
            pass
        finally:
            await self._teardown()
            ctx.sessions.discard(self)
            ctx.metrics.connection_closed(self._ws.close_code)

    async def _serve(self) -> None:
        async for message in self._ws:
            await self._on_message(message)
            if self._closing is not None:
                break

    async def _teardown(self) -> None:
        if self._live_timer is not None:
            self._live_timer.cancel()
            self._live_timer = None
        tasks: list[asyncio.Task[None]] = []
        if self._sub_task is not None:
            self._sub_task.cancel()
            tasks.append(self._sub_task)
        for task in self._inflight:
            task.cancel()
            tasks.append(task)
        writer = self._writer
        if writer is not None:
            # A close that flushes first (abuse, auth failure) lets the writer finish its queue;
            # otherwise the socket is gone or going and what is queued cannot be delivered.
            closing = self._closing
            if closing is None or not closing[2] or self._ws.state is State.CLOSED:
                writer.cancel()
            tasks.append(writer)
        if self._close_task is not None:
            tasks.append(self._close_task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._presence_teardown()

    def sweep(self, now: float) -> None:
        """Called about every second by the gateway, for what would otherwise need a timer.

        A write blocked too long means the client stopped reading: close with 4008. A writer
        idle for a heartbeat interval is retired, so an idle socket holds no writer task.
        """
        started = self._send_started
        if started and now - started > self._ctx.config.send_stall_timeout_s:
            closing = self._closing
            if closing is None:
                self._request_close(CLOSE_SLOW_CONSUMER, "slow consumer", flush=False)
            elif closing[2] and now - started > self._ctx.config.send_stall_timeout_s * 2:
                # The flush before a close (abuse, auth) is stuck: nothing will get through.
                # A close without flush is bounded by close_timeout_s in _close().
                self._ws.transport.abort()
            return
        idle = self._idle_since
        if idle and now - idle > self._ctx.config.heartbeat_interval_s:
            wakeup = self._wakeup
            self._wakeup = None
            self._writer = None
            self._idle_since = 0.0
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(False)

    def abort(self) -> None:
        """Drops the TCP connection (the last resort of a shutdown that a client holds up)."""
        self._ws.transport.abort()

    # -- authentication ---------------------------------------------------------------------

    async def _authenticate(self) -> bool:
        """Authenticates from Sec-WebSocket-Protocol or the first frames; False when closed."""
        config = self._ctx.config
        offered: list[str] = []
        request = self._ws.request
        if request is not None:
            for header in request.headers.get_all("Sec-WebSocket-Protocol"):
                offered.extend(parse_subprotocol(header))
        _has_protocol, token = frames.bearer_token_from_subprotocols(offered)
        if token is not None:
            return await self._accept_token(token, "", None)

        deadline = self._loop.time() + config.auth_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await self._ws.recv()
                    auth = await self._before_auth(message)
                    if auth is not None:
                        break
        except TimeoutError:
            await self._refuse(
                "", f"no auth frame within {config.auth_timeout_s:g} s", "auth timeout"
            )
            return False
        if auth.WhichOneof("frame") is None:
            return False  # too many bad frames: closed
        return await self._accept_token(auth.auth.token, auth.request_id, auth.auth)

    async def _before_auth(self, message: str | bytes) -> gateway_pb2.ClientFrame | None:
        """Answers a frame that comes before authentication; the auth frame is returned.

        After too many bad frames the socket is closed and an empty frame is returned.
        """
        ctx = self._ctx
        self._binary = binary = isinstance(message, bytes)
        frame = frames.decode_client_frame(message, ctx.config.max_request_id_chars)
        if isinstance(frame, FrameError):
            ctx.metrics.frame("invalid", frame.reason)
            await self._ws.send(frames.encode_frame_error(frame, binary))
        elif frame.WhichOneof("frame") != "auth":
            ctx.metrics.frame(str(frame.WhichOneof("frame")), "unauthenticated")
            await self._ws.send(
                frames.encode_error(
                    frame.request_id,
                    ErrorCode.ERROR_CODE_UNAUTHENTICATED,
                    "not authenticated: the first frame must be `auth` "
                    "(or offer `bearer.<token>` in Sec-WebSocket-Protocol)",
                    binary,
                )
            )
        else:
            ctx.metrics.frame("auth", "ok")
            return frame
        if self._count_bad_frame():
            await self._close(CLOSE_POLICY_VIOLATION, "too many bad frames")
            return gateway_pb2.ClientFrame()
        return None

    async def _accept_token(
        self, token: str, request_id: str, auth: gateway_pb2.AuthRequest | None
    ) -> bool:
        try:
            identity = self._ctx.verifier.verify(token)
        except TokenError as exc:
            await self._refuse(request_id, str(exc), "authentication failed")
            return False
        self._set_identity(identity, token)
        self._forget_handshake()
        self._emit(self._ready(request_id))
        self._presence_connect()
        if auth is not None and len(auth.resume):
            # The auth frame is the first frame and carries cursors: subscribe from them.
            await self._resume(request_id, auth.resume, "auth.resume", self._binary)
        else:
            self._live_timer = self._loop.call_later(IDLE_LIVE_START_S, self._start_live_if_idle)
        return True

    def _start_live_if_idle(self) -> None:
        """No frame came after authentication: deliver live events from now on."""
        self._live_timer = None
        if not self._sub_started and self._closing is None:
            self._start_subscription()

    async def _refuse(self, request_id: str, message: str, reason: str) -> None:
        """UNAUTHENTICATED, then close 1008; bounded, as the client may not be reading."""
        error = frames.encode_error(
            request_id, ErrorCode.ERROR_CODE_UNAUTHENTICATED, message, self._binary
        )
        try:
            async with asyncio.timeout(self._ctx.config.close_timeout_s):
                await self._ws.send(error)
        except TimeoutError:
            self._ws.transport.abort()
            return
        await self._close(CLOSE_POLICY_VIOLATION, reason)

    def _forget_handshake(self) -> None:
        # The handshake's headers (the bearer token among them) are not needed any more and
        # cost ~3 KiB per socket. websockets only reads them during the handshake.
        if self._ws.request is not None:
            self._ws.request.headers.clear()
        if self._ws.response is not None:
            self._ws.response.headers.clear()

    def _set_identity(self, identity: Identity, token: str) -> None:
        self._user_id = identity.user_id
        self._device_id = identity.device_id
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _ready(self, request_id: str) -> Encoded:
        config = self._ctx.config
        frame = gateway_pb2.ServerFrame(request_id=request_id)
        frame.ready.user_id = self._user_id
        frame.ready.device_id = self._device_id
        frame.ready.heartbeat_interval_ms = round(config.heartbeat_interval_s * 1000)
        frame.ready.max_frame_bytes = config.max_frame_bytes
        return frames.encode_frame(frame, self._binary)

    # -- frames from the client --------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        ctx = self._ctx
        self._binary = binary = not isinstance(message, str)
        frame = frames.decode_client_frame(message, ctx.config.max_request_id_chars)
        if isinstance(frame, FrameError):
            ctx.metrics.frame("invalid", frame.reason)
            self._reject(frame, binary)
            return
        kind = frame.WhichOneof("frame")
        assert kind is not None  # decode_client_frame refuses empty frames
        request_id = frame.request_id
        if not self._sub_started and kind != "resume":
            # The first frame after authentication is not a resume: events are live-only.
            self._start_subscription()

        if kind in _PRESENCE_FRAMES:
            await self._on_presence_frame(kind, frame, binary)
            return
        route = ctx.routes.get(kind)
        if route is not None:
            if kind == "send_message":
                wait_s = ctx.send_limiter.acquire(self._user_id)
                if wait_s:
                    ctx.metrics.frame(kind, "rate_limited")
                    self._emit(
                        frames.encode_error(
                            request_id,
                            ErrorCode.ERROR_CODE_RESOURCE_EXHAUSTED,
                            f"send rate limit: {ctx.config.send_rate_per_s:g} per second, "
                            f"bursts of {ctx.config.send_burst}",
                            binary,
                            retry_after_ms=max(1, math.ceil(wait_s * 1000)),
                        )
                    )
                    return
            inflight = self._inflight
            if len(inflight) >= ctx.config.max_inflight_requests:
                # Stop reading until a call finishes; TCP pushes back on the client.
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            payload = getattr(frame, kind).SerializeToString()
            task = self._loop.create_task(self._call(route, request_id, payload, binary))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        elif kind == "ping":
            ctx.metrics.frame(kind, "ok")
            pong = gateway_pb2.ServerFrame(request_id=request_id, pong=gateway_pb2.PingResponse())
            self._emit(frames.encode_frame(pong, binary))
        elif kind == "resume":
            ctx.metrics.frame(kind, "ok")
            await self._resume(request_id, frame.resume.cursors, "resume.cursors", binary)
        elif kind == "auth":
            ctx.metrics.frame(kind, "ok")
            await self._reauthenticate(frame.auth, request_id, binary)
        else:  # pragma: no cover - a new frame type without a handler
            self._reject(
                FrameError(
                    ErrorCode.ERROR_CODE_UNIMPLEMENTED,
                    "unimplemented",
                    f"frame type {kind!r} is not supported by this gateway",
                    request_id,
                ),
                binary,
            )

    def _reject(self, error: FrameError, binary: bool) -> None:
        """Answers a bad frame with an error frame; too many of them close the socket."""
        self._emit(frames.encode_frame_error(error, binary))
        if self._count_bad_frame():
            self._request_close(CLOSE_POLICY_VIOLATION, "too many bad frames", flush=True)

    def _count_bad_frame(self) -> bool:
        config = self._ctx.config
        if self._bad is None:
            self._bad = BadFrameCounter(config.bad_frame_limit, config.bad_frame_window_s)
        return self._bad.record(self._ctx.clock.monotonic())

    async def _reauthenticate(
        self, auth: gateway_pb2.AuthRequest, request_id: str, binary: bool
    ) -> None:
        """A later `auth` frame replaces the token (before it expires) for the same identity."""
        try:
            identity = self._ctx.verifier.verify(auth.token)
        except TokenError as exc:
            self._emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_UNAUTHENTICATED, str(exc), binary
                )
            )
            self._request_close(CLOSE_POLICY_VIOLATION, "authentication failed", flush=True)
            return
        if identity.user_id != self._user_id or identity.device_id != self._device_id:
            self._reject(
                FrameError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    "identity_changed",
                    "auth.token is for another user or device than this connection",
                    request_id,
                ),
                binary,
            )
            return
        self._set_identity(identity, auth.token)
        self._emit(self._ready(request_id))
        if self._psubs and self._watch_task is None:
            # The watch stopped (its token expired, say): the new token restarts it.
            self._restart_watch()
        if len(auth.resume):
            await self._resume(request_id, auth.resume, "auth.resume", binary)

    # -- requests ---------------------------------------------------------------------------

    async def _call(self, route: Route, request_id: str, payload: bytes, binary: bool) -> None:
        metrics = self._ctx.metrics
        try:
            answer = await route.method(
                payload, metadata=self._metadata, timeout=self._ctx.config.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            status = exc.code()
            metrics.frame(route.frame, status.name.lower())
            self._emit(
                frames.encode_error(
                    request_id,
                    frames.error_code_for_status(status),
                    exc.details() or status.name,
                    binary,
                    retry_after_ms=_retry_after_ms(exc),
                )
            )
            return
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            # The channel is closing (gateway shutdown) or broken.
            metrics.frame(route.frame, "unavailable")
            self._emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_UNAVAILABLE, f"chat service: {exc}", binary
                )
            )
            return
        except Exception:
            log.exception("%s call of %s failed", route.frame, self._user_id)
            metrics.frame(route.frame, "internal")
            self._emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_INTERNAL, "gateway error", binary
                )
            )
            return
        metrics.frame(route.frame, "ok")
        self._emit(frames.encode_payload(request_id, route.slot, answer, binary))

    # -- the event stream -------------------------------------------------------------------

    def _start_subscription(self) -> None:
        if self._live_timer is not None:
            self._live_timer.cancel()
            self._live_timer = None
        self._sub_started = True
        self._sub_task = self._loop.create_task(self._subscribe_loop())

    async def _resume(
        self,
        request_id: str,
        cursors: Sequence[types_pb2.ConversationCursor],
        path: str,
        binary: bool,
    ) -> None:
        """(Re)starts the stream from the client's cursors and the tracked ones for the rest."""
        error = frames.validate_cursors(cursors, path)
        if error is not None:
            self._reject(FrameError(error.code, error.reason, error.message, request_id), binary)
            return
        old = self._sub_task
        if old is not None:
            # Stop the old stream before touching the cursors: it must not deliver an event
            # once the client has said where it stands.
            old.cancel()
            await asyncio.gather(old, return_exceptions=True)
        tracked = self._tracked
        for cursor in cursors:
            tracked[cursor.conversation_id] = cursor.seq
        self._pending_resumes.append((request_id, binary))
        self._start_subscription()

    async def _subscribe_loop(self) -> None:
        config = self._ctx.config
        backoff = config.resubscribe_initial_s
        while True:
            request = event_service_pb2.SubscribeEventsRequest(device_id=self._device_id)
            for conversation_id, seq in self._tracked.items():
                request.cursors.add(conversation_id=conversation_id, seq=seq)
            call = self._ctx.subscribe(request, metadata=self._metadata)
            try:
                while True:
                    item = await call.read()
                    if item is _EOF:
                        break
                    if self._on_stream_item(cast(event_service_pb2.SubscribeEventsResponse, item)):
                        backoff = config.resubscribe_initial_s
            except grpc.aio.AioRpcError as exc:
                if not self._on_stream_error(exc):
                    return
            except (grpc.aio.UsageError, grpc.aio.InternalError):
                log.debug("event stream of %s: channel closing", self._user_id)
            except Exception:
                # A bug or a malformed item: start over from what was delivered (no gap).
                log.exception("event stream of %s failed; resubscribing", self._user_id)
            finally:
                call.cancel()
            # The stream ended or broke: subscribe again from what was delivered.
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, config.resubscribe_max_s)

    def _on_stream_item(self, response: event_service_pb2.SubscribeEventsResponse) -> bool:
        """Forwards one stream item; True for the caught_up marker."""
        which = response.WhichOneof("item")
        if which == "event":
            event = response.event
            seq = event.seq
            if seq:
                tracked = self._tracked
                conversation_id = event.conversation_id
                if seq <= tracked.get(conversation_id, 0):
                    return False  # already delivered (a replay after a resubscription)
                tracked[conversation_id] = seq
            elif event.HasField("conversation_created"):
                # A new conversation's log starts at 0: a resubscription replays it from there.
                self._tracked.setdefault(event.conversation_id, 0)
            self._emit(self._ctx.event_frames.encode(event, self._binary))
            return False
        if which == "caught_up":
            revoked = response.caught_up.revoked_conversation_ids
            for conversation_id in revoked:
                self._tracked.pop(conversation_id, None)
            # Where live events of the other conversations start: a resubscription after a
            # break replays from there, so events of the break reach this device too.
            for baseline in response.caught_up.baselines:
                self._tracked.setdefault(baseline.conversation_id, baseline.seq)
            if self._pending_resumes:
                for request_id, binary in self._pending_resumes:
                    frame = gateway_pb2.ServerFrame(request_id=request_id)
                    frame.resumed.revoked_conversation_ids.extend(revoked)
                    self._emit(frames.encode_frame(frame, binary))
                self._pending_resumes.clear()
            return True
        return False  # an item type this gateway does not know yet

    def _on_stream_error(self, exc: grpc.aio.AioRpcError) -> bool:
        """Handles a broken stream; True to resubscribe."""
        status = exc.code()
        if status is grpc.StatusCode.UNAUTHENTICATED or status in _FATAL_STREAM_CODES:
            code = frames.error_code_for_status(status)
            message = f"event stream: {exc.details() or status.name}"
            waiting = self._pending_resumes or [("", self._binary)]
            for request_id, binary in waiting:
                self._emit(frames.encode_error(request_id, code, message, binary))
            self._pending_resumes = []
            if status is grpc.StatusCode.UNAUTHENTICATED:
                # The token expired or was revoked since the connection authenticated.
                self._request_close(CLOSE_POLICY_VIOLATION, "authentication failed", flush=True)
            else:
                # The next client frame starts a new stream (e.g. a resume with other cursors).
                self._sub_started = False
            log.info("event stream of %s failed: %s %s", self._user_id, status.name, exc.details())
            return False
        log.debug("event stream of %s broke (%s); resubscribing", self._user_id, status.name)
        return True

    # -- presence and typing -----------------------------------------------------------------

    def _presence_connect(self) -> None:
        """Registers the socket with presence_service (in the background: never delays frames)."""
        if self._ctx.presence is None or self._conn_id:
            return
        self._conn_id = uuid.uuid4().hex
        self._connect_task = self._loop.create_task(self._connect_presence())

    async def _connect_presence(self) -> None:
        ctx = self._ctx
        assert ctx.presence is not None
        try:
            response = await ctx.presence.connect(
                presence_pb.ConnectRequest(connection_id=self._conn_id),
                metadata=self._metadata,
                timeout=CONNECT_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            # The heartbeats that follow register the connection as well.
            log.warning(
                "presence Connect of %s failed: %s %s",
                self._user_id,
                exc.code().name,
                exc.details(),
            )
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            log.debug("presence Connect of %s: channel closing (%s)", self._user_id, exc)
        except Exception:
            log.exception("presence Connect of %s failed", self._user_id)
        else:
            self._pstatus = response.presence.status
            interval = response.heartbeat_interval.ToNanoseconds() / 1e9
            if interval > 0:
                ctx.presence_heartbeat_s = interval
        finally:
            self._connect_task = None
        if self._hb_due == 0.0:  # not torn down meanwhile (-1.0)
            self._hb_due = self._loop.time() + ctx.presence_heartbeat_s

    def presence_heartbeat_due(self, now: float) -> bool:
        """Whether the gateway's heartbeat loop should heartbeat this socket now."""
        due = self._hb_due
        return 0.0 < due <= now and self._hb_task is None

    def start_presence_heartbeat(self) -> asyncio.Task[None]:
        """One Heartbeat call, as a task the heartbeat loop waits for (with its batch)."""
        self._hb_due = self._loop.time() + self._ctx.presence_heartbeat_s
        task = self._hb_task = self._loop.create_task(self._presence_heartbeat())
        return task

    async def _presence_heartbeat(self) -> None:
        methods = self._ctx.presence
        assert methods is not None
        try:
            response = await methods.heartbeat(
                presence_pb.HeartbeatRequest(
                    connection_id=self._conn_id, known_status=self._pstatus
                ),
                metadata=self._metadata,
                timeout=HEARTBEAT_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            # UNAUTHENTICATED (an expired token) heals with the next `auth` frame.
            log.info(
                "presence Heartbeat of %s failed: %s %s",
                self._user_id,
                exc.code().name,
                exc.details(),
            )
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            log.debug("presence Heartbeat of %s: channel closing (%s)", self._user_id, exc)
        except Exception:
            log.exception("presence Heartbeat of %s failed", self._user_id)
        else:
            if response.status:
                self._pstatus = response.status
        finally:
            self._hb_task = None

    async def _presence_teardown(self) -> None:
        """Stops the watch, lets Connect / a heartbeat in flight finish, then Disconnect."""
        methods = self._ctx.presence
        if methods is None or not self._conn_id:
            return
        self._hb_due = -1.0  # no more heartbeats
        self._psubs = None
        watch = self._watch_task
        self._watch_task = None
        if watch is not None:
            watch.cancel()
        # Connect and heartbeats are bounded by their deadlines; waiting for them (instead of
        # cancelling) keeps one from reaching presence_service after the Disconnect.
        pending = [t for t in (watch, self._connect_task, self._hb_task) if t is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await methods.disconnect(
                presence_pb.DisconnectRequest(connection_id=self._conn_id),
                metadata=self._metadata,
                timeout=DISCONNECT_TIMEOUT_S,
            )
        except Exception as exc:  # best effort: the TTL turns the connection offline anyway
            log.debug("presence Disconnect of %s failed: %s", self._user_id, exc)

    async def _on_presence_frame(
        self, kind: str, frame: gateway_pb2.ClientFrame, binary: bool
    ) -> None:
        ctx = self._ctx
        request_id = frame.request_id
        if ctx.presence is None:
            ctx.metrics.frame(kind, "unimplemented")
            self._emit(
                frames.encode_error(
                    request_id,
                    ErrorCode.ERROR_CODE_UNIMPLEMENTED,
                    f"{kind}: presence and typing are not enabled on this gateway",
                    binary,
                )
            )
            return
        if kind == "presence_unsubscribe":
            ctx.metrics.frame(kind, "ok")
            self._unsubscribe(frame.presence_unsubscribe.user_ids)
            answer = gateway_pb2.ServerFrame(request_id=request_id)
            answer.presence_unsubscribe.SetInParent()
            self._emit(frames.encode_frame(answer, binary))
            return
        if kind == "presence_subscribe":
            user_ids = frame.presence_subscribe.user_ids
            message = validate_user_ids(user_ids, "presence_subscribe.user_ids")
            if message is None:
                message = self._subscription_limit_error(user_ids)
            if message is not None:
                ctx.metrics.frame(kind, "invalid_value")
                self._emit(
                    frames.encode_error(
                        request_id, ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, binary
                    )
                )
                return
        inflight = self._inflight
        if len(inflight) >= ctx.config.max_inflight_requests:
            await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        task = self._loop.create_task(self._presence_request(kind, frame, binary))
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    def _subscription_limit_error(self, user_ids: Sequence[str]) -> str | None:
        limit = self._ctx.config.max_presence_subscriptions
        total = len(self._psubs.union(user_ids) if self._psubs else set(user_ids))
        if len(user_ids) > limit or total > limit:
            return (
                f"presence_subscribe would watch {max(total, len(user_ids))} users; "
                f"at most {limit} per connection"
            )
        return None

    async def _presence_request(
        self, kind: str, frame: gateway_pb2.ClientFrame, binary: bool
    ) -> None:
        ctx = self._ctx
        methods = ctx.presence
        assert methods is not None
        request_id = frame.request_id
        answer = gateway_pb2.ServerFrame(request_id=request_id)
        timeout = ctx.config.rpc_timeout_s
        try:
            if kind == "presence_subscribe":
                user_ids = list(frame.presence_subscribe.user_ids)
                answer.presence_subscribe.SetInParent()
                if user_ids:
                    got = await methods.get_presence(
                        presence_pb.GetPresenceRequest(user_ids=user_ids),
                        metadata=self._metadata,
                        timeout=timeout,
                    )
                    # Checked again: another subscribe may have finished meanwhile.
                    message = self._subscription_limit_error(user_ids)
                    if message is not None:
                        ctx.metrics.frame(kind, "invalid_value")
                        self._emit(
                            frames.encode_error(
                                request_id, ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, binary
                            )
                        )
                        return
                    self._subscribe(user_ids)
                    answer.presence_subscribe.presences.extend(got.presences)
            elif kind == "set_status":
                status = await methods.set_status(
                    frame.set_status, metadata=self._metadata, timeout=timeout
                )
                if status.presence.status:
                    self._pstatus = status.presence.status
                answer.set_status.CopyFrom(status)
            else:  # typing
                typing = await methods.send_typing(
                    frame.typing, metadata=self._metadata, timeout=timeout
                )
                answer.typing.CopyFrom(typing)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            ctx.metrics.frame(kind, code.name.lower())
            self._emit(
                frames.encode_error(
                    request_id,
                    frames.error_code_for_status(code),
                    exc.details() or code.name,
                    binary,
                    retry_after_ms=_retry_after_ms(exc),
                )
            )
            return
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            ctx.metrics.frame(kind, "unavailable")
            self._emit(
                frames.encode_error(
                    request_id,
                    ErrorCode.ERROR_CODE_UNAVAILABLE,
                    f"presence service: {exc}",
                    binary,
                )
            )
            return
        except Exception:
            log.exception("%s call of %s failed", kind, self._user_id)
            ctx.metrics.frame(kind, "internal")
            self._emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_INTERNAL, "gateway error", binary
                )
            )
            return
        ctx.metrics.frame(kind, "ok")
        self._emit(frames.encode_frame(answer, binary))

    def _subscribe(self, user_ids: Iterable[str]) -> None:
        subs = self._psubs
        if subs is None:
            subs = self._psubs = set()
        before = len(subs)
        subs.update(user_ids)
        if len(subs) != before or self._watch_task is None:
            self._restart_watch()

    def _unsubscribe(self, user_ids: Iterable[str]) -> None:
        subs = self._psubs
        if not subs:
            return
        before = len(subs)
        subs.difference_update(user_ids)
        if not subs:
            self._psubs = None
        if len(subs) != before:
            self._restart_watch()

    def _restart_watch(self) -> None:
        """Watches the current set: the new stream first, the old one cancelled once it runs."""
        old = self._watch_task
        subs = self._psubs
        if not subs or self._closing is not None:
            self._watch_task = None
            if old is not None:
                old.cancel()
            return
        self._watch_task = self._loop.create_task(self._watch_loop(sorted(subs), old))

    async def _watch_loop(self, user_ids: list[str], old: asyncio.Task[None] | None) -> None:
        methods = self._ctx.presence
        assert methods is not None
        config = self._ctx.config
        backoff = config.resubscribe_initial_s
        try:
            while True:
                call = methods.watch(
                    presence_pb.WatchRequest(user_ids=user_ids), metadata=self._metadata
                )
                try:
                    while True:
                        item = await call.read()
                        if old is not None:
                            # The new stream answers: the old one (the previous set) can go.
                            old.cancel()
                            old = None
                        if item is _EOF:
                            break
                        data = frames.encode_watch_response(
                            cast(presence_pb.WatchResponse, item), self._binary
                        )
                        if data is not None:
                            self._emit(data)
                        backoff = config.resubscribe_initial_s
                except grpc.aio.AioRpcError as exc:
                    status = exc.code()
                    if status is grpc.StatusCode.UNAUTHENTICATED or status in _FATAL_STREAM_CODES:
                        # UNAUTHENTICATED: the next `auth` frame restarts the watch; the rest
                        # (a bad id, say): the next subscribe or unsubscribe does.
                        log.info(
                            "presence watch of %s stopped: %s %s",
                            self._user_id,
                            status.name,
                            exc.details(),
                        )
                        return
                    log.debug("presence watch of %s broke (%s)", self._user_id, status.name)
                except (grpc.aio.UsageError, grpc.aio.InternalError):
                    log.debug("presence watch of %s: channel closing", self._user_id)
                except Exception:
                    log.exception("presence watch of %s failed; reopening", self._user_id)
                finally:
                    call.cancel()
                if old is not None:
                    old.cancel()
                    old = None
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, config.resubscribe_max_s)
        finally:
            if old is not None:
                old.cancel()
            if self._watch_task is asyncio.current_task():
                self._watch_task = None

    # -- the outbound queue -----------------------------------------------------------------

    def _emit(self, data: Encoded) -> None:
        """Queues a frame for the writer; never waits."""
        if self._closing is not None:
            return
        out = self._out
        out.append(data)
        if len(out) + self._out_batch > self._ctx.config.outbound_queue_max:
            self._request_close(CLOSE_SLOW_CONSUMER, "slow consumer", flush=False)
            return
        self._wake_writer()

    def _wake_writer(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            self._idle_since = 0.0
            if not wakeup.done():
                wakeup.set_result(True)
        elif self._writer is None:
            self._writer = self._loop.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Writes queued frames in order, until closing or retired by sweep() when idle.

        An idle socket then costs no task; a busy one keeps its writer (no task per frame).
        """
        ws = self._ws
        loop = self._loop
        try:
            while True:
                batch = self._out
                if batch:
                    self._out = []
                    self._out_batch = len(batch)
                    for data in batch:
                        self._send_started = loop.time()
                        await ws.send(data)
                        self._out_batch -= 1
                    self._send_started = 0.0
                    continue
                closing = self._closing
                if closing is not None:
                    if closing[2]:
                        await self._close(closing[0], closing[1])
                    return
                self._wakeup = wakeup = loop.create_future()
                self._idle_since = loop.time()
                if not await wakeup:
                    # Retired: sweep() has already forgotten this task, so an _emit() from now
                    # on starts a new writer.
                    return
        except ConnectionClosed:
            pass

    def _request_close(self, code: int, reason: str, flush: bool) -> None:
        """Closes the socket once: after the queued frames when `flush`, else right away."""
        if self._closing is not None:
            return
        self._closing = (code, reason, flush)
        if flush and self._writer is not None:
            self._wake_writer()  # it writes what is queued, then closes
            return
        self._out.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():  # lets an idle writer return
            self._wakeup = None
            self._idle_since = 0.0
            wakeup.set_result(True)
        self._close_task = self._loop.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """The closing handshake, bounded: a client that reads nothing would hold it forever."""
        try:
            async with asyncio.timeout(self._ctx.config.close_timeout_s):
                await self._ws.close(code, reason)
        except TimeoutError:
            self._ws.transport.abort()


def _retry_after_ms(exc: grpc.aio.AioRpcError) -> int:
    """A retry-after hint chat_service may put in trailing metadata (`retry-after-ms`)."""
    if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return 0
    metadata = cast(Iterable[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    for key, value in metadata:
        if key in _RETRY_AFTER_KEYS:
            try:
                return max(0, int(value if isinstance(value, str) else value.decode()))
            except ValueError:
                return 0
    return 0
