"""One WebSocket connection's I/O: reads frames, carries out the protocol's actions, writes.

The decisions are made by `Protocol` (gateway_ws/protocol.py, no I/O); a `Session` feeds it what
happens (a client message, an event stream item or end, an RPC result, a due timer) and runs the
actions it answers with:

* frames go to the socket's `Writer` (gateway_ws/writer.py), a bounded queue drained by one
  task, so nothing that produces frames ever waits on a slow client;
* each RPC runs as a task of its own (at most `max_inflight_requests`; beyond that the socket is
  not read until one finishes), so one slow call never holds up another;
* the event stream is the socket's stream on the gateway's shared call
  (`EventService.SubscribeEventsMultiplexed`, gateway_ws/event_mux.py), whose reader hands each
  item to the protocol, or with `CHATMESH_WS_EVENT_STREAMS=per_device` a
  `EventService.SubscribeEvents` call of its own read by one task (no task per event either way);
  a new stream replaces the old one, whose late items the protocol ignores by generation;
* one timer at a time, armed at the protocol's next deadline;
* the keepalive ping is sent from the gateway's sweep (see `Session.sweep`), not from a task
  per socket: a ping every heartbeat interval, and a ping unanswered for two more intervals
  closes the socket with 1011, so a socket silent three intervals is closed;
* presence (with `presence_target`) is the socket's `PresenceLink`
  (gateway_ws/presence_link.py).

The gateway is never the source of truth: chat_service checks the forwarded token and the
caller's rights on every call and every stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from chatmesh.events.v1 import event_service_pb2
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.headers import parse_subprotocol
from websockets.protocol import State

from chatmesh_common.auth import TokenVerifier
from chatmesh_common.clock import Clock
from chatmesh_common.logs import fields
from chatmesh_common.request_id import request_id_metadata
from gateway_ws import frames
from gateway_ws.admission import Admission, IPNetwork, client_address
from gateway_ws.config import GatewayConfig
from gateway_ws.event_mux import EventMux, MuxedStream
from gateway_ws.frames import ErrorCode
from gateway_ws.metrics import FrameMetrics, close_code, close_reason
from gateway_ws.presence_link import HeartbeatInterval, PresenceLink, PresenceMethods
from gateway_ws.protocol import (
    Action,
    Authenticated,
    AuthFailed,
    CallPresence,
    CallRpc,
    Close,
    OpenStream,
    Protocol,
    Send,
)
from gateway_ws.ratelimit import RateLimiter
from gateway_ws.upstream import EOF, FATAL_STREAM_CODES, Route, SubscribeMethod, retry_after_ms
from gateway_ws.writer import Writer

# Close code for a socket refused by a limit: the client may come back later (RFC 6455 1013).
CLOSE_TRY_AGAIN_LATER = 1013
# websockets' own code for a keepalive ping without a pong in time.
CLOSE_KEEPALIVE_TIMEOUT = 1011

log = logging.getLogger(__name__)
# One JSON line per socket opened and closed and per refused token (silence: set its level higher).
sockets_log = logging.getLogger("gateway_ws.sockets")


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
    # Every socket's stream on one call (None: a call per socket, CHATMESH_WS_EVENT_STREAMS).
    event_mux: EventMux | None = None
    # PresenceService, or None when presence is disabled (empty presence_target).
    presence: PresenceMethods | None = None
    # How often each socket heartbeats (the last ConnectResponse.heartbeat_interval).
    presence_heartbeat: HeartbeatInterval = field(default_factory=HeartbeatInterval)
    sessions: set[Session] = field(default_factory=set)
    # Origins, sockets per address and per user, failed authentications (None: no limits).
    admission: Admission | None = None
    # Proxies whose X-Forwarded-For names the client (CHATMESH_WS_TRUSTED_PROXIES).
    trusted_proxies: Sequence[IPNetwork] = ()
    # Event frames encoded once per event and encoding for all sockets.
    event_frames: frames.EventFrames = field(default_factory=frames.EventFrames)


class Session:
    """The gateway's half of one WebSocket connection."""

    __slots__ = (
        "_admitted_user",
        "_ctx",
        "_inflight",
        "_link",
        "_loop",
        "_metadata",
        "_online",
        "_peer",
        "_ping_at",
        "_pong",
        "_protocol",
        "_stream",
        "_timer",
        "_timer_at",
        "_writer",
        "_ws",
    )

    def __init__(self, ctx: GatewayContext, ws: ServerConnection) -> None:
        self._ctx = ctx
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._protocol = Protocol(
            ctx.config,
            ctx.clock,
            ctx.verifier,
            ctx.send_limiter,
            ctx.routes,
            ctx.metrics,
            ctx.event_frames,
            presence=ctx.presence is not None,
        )
        self._writer = Writer(ws, ctx.config)
        self._link: PresenceLink | None = None
        if ctx.presence is not None:
            self._link = PresenceLink(
                ctx.presence,
                ctx.presence_heartbeat,
                ctx.config,
                ctx.metrics,
                self._writer,
                self._protocol,
            )
        self._metadata: tuple[tuple[str, str], ...] = ()
        # The user counted online by the metrics ("" until authenticated).
        self._online = ""
        # The peer address admission counts this socket under.
        remote = ws.remote_address
        forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request else None
        self._peer = client_address(
            str(remote[0]) if remote else "", forwarded, ctx.trusted_proxies
        )
        self._admitted_user = ""
        self._inflight: set[asyncio.Task[None]] = set()
        # The event stream: a call of its own (read by a task) or one on the shared call.
        self._stream: asyncio.Task[None] | MuxedStream | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # The last keepalive ping's loop.time() (the open, before the first), and while it is
        # unanswered the task sending it, then websockets' pong waiter.
        self._ping_at = self._loop.time()
        self._pong: asyncio.Task[Awaitable[float]] | asyncio.Future[float] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serves the connection until it closes; websockets runs this as the handler."""
        ctx = self._ctx
        ctx.sessions.add(self)
        ctx.metrics.socket_opened()
        opened_at = self._loop.time()
        sockets_log.info("socket open", extra=fields(peer=self._peer))
        if ctx.admission is not None:
            ctx.admission.opened(self._peer)
        try:
            self._apply(self._protocol.start(self._offered_subprotocols()))
            await self._serve()
        except ConnectionClosed:
            pass
        finally:
            await self._teardown()
            ctx.sessions.discard(self)
            if ctx.admission is not None:
                ctx.admission.closed(self._peer, self._admitted_user)
            if self._online:
                ctx.metrics.user_offline(self._online)
            code = close_code(self._ws.protocol)
            ctx.metrics.socket_closed(code)
            sockets_log.info(
                "socket closed",
                extra=fields(
                    user=self._protocol.user_id or None,
                    device=self._protocol.device_id or None,
                    peer=self._peer,
                    code=code,
                    reason=close_reason(self._ws.protocol),
                    duration_s=round(self._loop.time() - opened_at, 3),
                ),
            )

    async def _serve(self) -> None:
        inflight = self._inflight
        limit = self._ctx.config.max_inflight_requests
        writer = self._writer
        async for message in self._ws:
            self._apply(self._protocol.receive(message))
            if writer.closing is not None:
                break
            while len(inflight) >= limit:
                # Stop reading until a call finishes; TCP pushes back on the client.
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)

    async def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks: list[asyncio.Future[Any]] = []
        if self._stream is not None:
            self._stream.cancel()
            if isinstance(self._stream, asyncio.Task):
                tasks.append(self._stream)
        for task in self._inflight:
            task.cancel()
            tasks.append(task)
        if isinstance(self._pong, asyncio.Task):
            self._pong.cancel()
            tasks.append(self._pong)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._writer.finish()
        if self._link is not None:
            await self._link.close()

    def sweep(self, now: float) -> None:
        """Called about every second by the gateway: the writer's stall and idle checks and
        the keepalive ping."""
        self._writer.sweep(now)
        self._keepalive(now)

    def _keepalive(self, now: float) -> None:
        """websockets' keepalive (ping_interval=heartbeat, ping_timeout=2 * heartbeat) without
        its task per socket: a task lives only while a ping is being written."""
        interval = self._ctx.config.heartbeat_interval_s
        pong = self._pong
        if pong is not None:
            if not pong.done():
                if now - self._ping_at > 2 * interval:
                    self._pong = None
                    self._writer.request_close(
                        CLOSE_KEEPALIVE_TIMEOUT, "keepalive ping timeout", flush=False
                    )
                return
            self._pong = None
            if isinstance(pong, asyncio.Task):
                if pong.cancelled() or pong.exception() is not None:
                    return  # the connection closed while the ping was written
                # Written: now wait for the pong (websockets resolves the waiter).
                self._pong = cast("asyncio.Future[float]", pong.result())
                return
        if (
            now - self._ping_at >= interval
            and self._writer.closing is None
            and self._ws.state is State.OPEN
        ):
            self._ping_at = now
            self._pong = self._loop.create_task(self._ws.ping())

    def abort(self) -> None:
        """Drops the TCP connection (the last resort of a shutdown that a client holds up)."""
        self._ws.transport.abort()

    def presence_heartbeat_due(self, now: float) -> bool:
        """Whether the gateway's heartbeat loop should heartbeat this socket now."""
        return self._link is not None and self._link.heartbeat_due(now)

    def start_presence_heartbeat(self) -> asyncio.Task[None]:
        """One Heartbeat call, as a task the heartbeat loop waits for (with its batch)."""
        assert self._link is not None
        return self._link.start_heartbeat()

    def _offered_subprotocols(self) -> list[str]:
        offered: list[str] = []
        request = self._ws.request
        if request is not None:
            for header in request.headers.get_all("Sec-WebSocket-Protocol"):
                offered.extend(parse_subprotocol(header))
        return offered

    # -- carrying out actions ---------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        writer = self._writer
        for action in actions:
            if isinstance(action, Send):
                writer.emit(action.data)
            elif isinstance(action, CallRpc):
                self._start(self._call(action))
            elif isinstance(action, OpenStream):
                old = self._stream
                if old is not None:
                    old.cancel()
                mux = self._ctx.event_mux
                if mux is not None and mux.supported:
                    self._stream = mux.open(action.request, self._metadata, self, action.generation)
                else:
                    self._stream = self._loop.create_task(self._read_stream(action))
            elif isinstance(action, CallPresence):
                assert self._link is not None
                call = self._link.handle(action.kind, action.frame, action.binary)
                if call is not None:
                    self._start(call)
            elif isinstance(action, Close):
                writer.request_close(action.code, action.reason, action.flush)
            elif isinstance(action, Authenticated):
                self._authenticated(action)
            elif isinstance(action, AuthFailed):
                sockets_log.info(
                    "authentication refused", extra=fields(peer=self._peer, reason=action.reason)
                )
                if self._ctx.admission is not None:
                    self._ctx.admission.auth_failed(self._peer)
        self._arm_timer()

    def _start(self, call: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(call)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _authenticated(self, action: Authenticated) -> None:
        identity = action.identity
        self._metadata = (("authorization", f"Bearer {action.token}"),)
        admission = self._ctx.admission
        if action.first and admission is not None:
            refusal = admission.admit_user(identity.user_id)
            if refusal is not None:
                self._refuse(refusal.reason, refusal.retry_after_s)
                return
            self._admitted_user = identity.user_id
        if action.first:
            self._forget_handshake()
            self._online = identity.user_id
            self._ctx.metrics.user_online(identity.user_id)
        if self._link is not None:
            self._link.authenticated(identity.user_id, self._metadata)

    def _refuse(self, reason: str, retry_after_s: float) -> None:
        """An authenticated socket over a limit: RESOURCE_EXHAUSTED with a retry-after, then
        closed (1013: try again later)."""
        error = frames.encode_error(
            "",
            ErrorCode.ERROR_CODE_RESOURCE_EXHAUSTED,
            f"{reason}; retry after {retry_after_s:g} s",
            self._protocol.binary,
            retry_after_ms=round(retry_after_s * 1000),
        )
        self._writer.emit(error)
        self._writer.request_close(CLOSE_TRY_AGAIN_LATER, reason, True)

    def _forget_handshake(self) -> None:
        # The handshake's headers (the bearer token among them) are not needed any more and
        # cost ~3 KiB per socket. websockets only reads them during the handshake.
        if self._ws.request is not None:
            self._ws.request.headers.clear()
        if self._ws.response is not None:
            self._ws.response.headers.clear()

    def _arm_timer(self) -> None:
        """One timer, at the protocol's next deadline."""
        deadline = self._protocol.next_deadline()
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._ctx.clock.monotonic())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self._protocol.tick())

    # -- calls and the event stream -----------------------------------------------------------

    async def _call(self, call: CallRpc) -> None:
        protocol = self._protocol
        try:
            # The client's request id goes along, so the services' logs show it.
            metadata = self._metadata + request_id_metadata(call.request_id)
            answer = await call.route.method(
                call.payload, metadata=metadata, timeout=self._ctx.config.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            actions = protocol.rpc_failed(
                call, exc.code(), exc.details() or "", retry_after_ms(exc)
            )
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            # The channel is closing (gateway shutdown) or broken.
            actions = protocol.rpc_failed(call, grpc.StatusCode.UNAVAILABLE, f"chat service: {exc}")
        except Exception:
            log.exception(
                "%s call of %s failed",
                call.route.frame,
                protocol.user_id,
                extra=fields(request_id=call.request_id),
            )
            actions = protocol.rpc_failed(call, grpc.StatusCode.INTERNAL, "gateway error")
        else:
            actions = protocol.rpc_done(call, answer)
        self._apply(actions)

    def stream_item(self, generation: int, item: event_service_pb2.SubscribeEventsResponse) -> None:
        """An item of this socket's stream on the shared call (event_mux.StreamListener)."""
        self._apply(self._protocol.stream_item(generation, item))

    def stream_ended(self, generation: int, status: grpc.StatusCode | None, details: str) -> None:
        """The end of this socket's stream on the shared call (event_mux.StreamListener)."""
        if status in FATAL_STREAM_CODES:
            log.info("event stream of %s failed: %s %s", self._protocol.user_id, status, details)
        self._apply(self._protocol.stream_ended(generation, status, details))

    async def _read_stream(self, open_: OpenStream) -> None:
        protocol = self._protocol
        generation = open_.generation
        status: grpc.StatusCode | None = None
        details = ""
        call = self._ctx.subscribe(open_.request, metadata=self._metadata)
        try:
            while True:
                item = await call.read()
                if item is EOF:
                    break
                self._apply(
                    protocol.stream_item(
                        generation, cast(event_service_pb2.SubscribeEventsResponse, item)
                    )
                )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            log.debug("event stream of %s ended: %s %s", protocol.user_id, code.name, details)
            status = code
        except (grpc.aio.UsageError, grpc.aio.InternalError):
            log.debug("event stream of %s: channel closing", protocol.user_id)
        except Exception:
            # A bug or a malformed item: start over from what was delivered (no gap).
            log.exception("event stream of %s failed; resubscribing", protocol.user_id)
        finally:
            call.cancel()
        if status in FATAL_STREAM_CODES:
            log.info("event stream of %s failed: %s %s", protocol.user_id, status, details)
        self._apply(protocol.stream_ended(generation, status, details))
