"""The per-socket protocol of the gateway, without I/O.

`Protocol` is one socket's state machine: authentication, the dispatch of client frames to
routes, the send rate limit and the abuse counter, the event stream's cursors and resumes, and
every decision to close. It is driven by inputs (a client message arrived, a stream item
arrived, a stream ended, an RPC finished, a timer is due) and answers each with a list of
actions (send these bytes, call this RPC, open the event stream with these cursors, close with
this code) that the socket loop (gateway_ws/session.py) carries out. It never waits, reads a
socket or starts a task; time comes from the injected clock, so tests drive every timer (the
auth timeout, the live-start delay, the bad-frame window, rate limits, resubscription backoff)
by hand.

The event stream opens as soon as the socket authenticates, so no event committed after that is
missed, whatever the app sends first. Its items are held back (not written) until the app's
first frame or `live_start_delay_s`: if that frame is `resume`, the held stream is replaced by
one from the resume cursors and, for every other conversation, the baseline the held stream
reported; the new stream replays the held events in order after the app's cursors. Otherwise
the held items are written as they are and the stream carries on live.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import grpc
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import event_service_pb2
from chatmesh.gateway.v1 import gateway_pb2

from chatmesh_common.auth import Identity, TokenError, TokenVerifier
from chatmesh_common.clock import Clock
from gateway_ws import frames
from gateway_ws.config import GatewayConfig
from gateway_ws.frames import Encoded, ErrorCode, FrameError
from gateway_ws.metrics import FrameMetrics
from gateway_ws.ratelimit import BadFrameCounter, RateLimiter
from gateway_ws.upstream import FATAL_STREAM_CODES, Route

CLOSE_POLICY_VIOLATION: Final = 1008

# Frames served by presence_service; UNIMPLEMENTED when the gateway has no presence link.
PRESENCE_FRAMES: Final = frozenset(
    {"presence_subscribe", "presence_unsubscribe", "set_status", "typing"}
)

StreamItem = event_service_pb2.SubscribeEventsResponse


# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes (after what is already queued)."""

    data: Encoded


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with `code`; after the queued frames when `flush`, else at once."""

    code: int
    reason: str
    flush: bool


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The socket is (re)authenticated: calls carry `token` from now on.

    `first` is False for a later `auth` frame that renewed the token of the same identity.
    """

    identity: Identity
    token: str
    first: bool


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A token was refused (the socket closes too): counted against the peer's address."""

    reason: str


@dataclass(frozen=True, slots=True)
class CallRpc:
    """Call `route` with `payload`; report the outcome with rpc_done or rpc_failed."""

    route: Route
    request_id: str
    payload: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class CallPresence:
    """Hand a presence frame to the presence link (gateway_ws/presence_link.py)."""

    kind: str
    frame: gateway_pb2.ClientFrame
    binary: bool


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Open the event stream with `request`, replacing any open one.

    Items and the end of the stream are reported with this `generation`; those of an older
    stream are ignored, so the old one needs no waiting for.
    """

    generation: int
    request: event_service_pb2.SubscribeEventsRequest


Action = Send | Close | Authenticated | AuthFailed | CallRpc | CallPresence | OpenStream


class _Resume:
    __slots__ = ("binary", "cursors", "request_id")

    def __init__(
        self, request_id: str, cursors: Sequence[types_pb2.ConversationCursor], binary: bool
    ) -> None:
        self.request_id = request_id
        self.cursors = list(cursors)
        self.binary = binary


class Protocol:
    """One socket's protocol state; see the module docstring."""

    __slots__ = (
        "_auth_deadline",
        "_backoff",
        "_bad",
        "_clock",
        "_config",
        "_event_frames",
        "_generation",
        "_held",
        "_held_caught_up",
        "_held_resumes",
        "_jitter",
        "_live_deadline",
        "_metrics",
        "_pending_resumes",
        "_presence",
        "_reopen_deadline",
        "_routes",
        "_send_limiter",
        "_streaming",
        "_verifier",
        "authenticated",
        "binary",
        "closed",
        "device_id",
        "tracked",
        "user_id",
    )

    def __init__(
        self,
        config: GatewayConfig,
        clock: Clock,
        verifier: TokenVerifier,
        send_limiter: RateLimiter,
        routes: dict[str, Route],
        metrics: FrameMetrics,
        event_frames: frames.EventFrames,
        presence: bool = False,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._clock = clock
        self._verifier = verifier
        self._send_limiter = send_limiter
        self._routes = routes
        self._metrics = metrics
        self._event_frames = event_frames
        self._presence = presence
        self._jitter = jitter
        self.user_id = ""
        self.device_id = ""
        # The encoding of the last client frame; pushed frames follow it.
        self.binary = False
        self.authenticated = False
        self.closed = False
        self._bad: BadFrameCounter | None = None
        self._auth_deadline: float | None = None
        # The event stream: its generation (0: none opened yet) and whether one is wanted;
        # False after a fatal stream error (the next client frame opens a new one).
        self._generation = 0
        self._streaming = False
        # Items of the stream opened at authentication, held until the first client frame or
        # the live-start delay (None when not holding), its caught_up marker, and the resumes
        # that wait for that marker's baselines.
        self._held: list[StreamItem] | None = None
        self._held_caught_up: event_service_pb2.CaughtUp | None = None
        self._held_resumes: list[_Resume] = []
        self._live_deadline: float | None = None
        # Resubscription after a break: when, and the backoff of the next one.
        self._reopen_deadline: float | None = None
        self._backoff = config.resubscribe_initial_s
        # Highest seq delivered per conversation: the cursors of every resubscription.
        self.tracked: dict[str, int] = {}
        # (request_id, binary) of resumes waiting for the stream's caught_up marker.
        self._pending_resumes: list[tuple[str, bool]] = []

    # -- inputs --------------------------------------------------------------------------

    def start(self, offered_subprotocols: Sequence[str]) -> list[Action]:
        """The socket is open: authenticate from `bearer.<token>`, or wait for an auth frame."""
        _has_protocol, token = frames.bearer_token_from_subprotocols(offered_subprotocols)
        if token is not None:
            return self._accept_token(token, "", None)
        self._auth_deadline = self._clock.monotonic() + self._config.auth_timeout_s
        return []

    def receive(self, message: str | bytes) -> list[Action]:
        """A message from the client."""
        if self.closed:
            return []
        self.binary = binary = not isinstance(message, str)
        frame = frames.decode_client_frame(message, self._config.max_request_id_chars)
        actions: list[Action] = []
        if isinstance(frame, FrameError):
            self._metrics.frame("invalid", frame.reason)
            self._reject(frame, actions)
            return actions
        kind = frame.WhichOneof("frame")
        assert kind is not None  # decode_client_frame refuses empty frames
        if not self.authenticated:
            self._before_auth(kind, frame, actions)
            return actions
        if kind != "resume":
            # The app's first frame is not a resume: what the stream holds is live.
            self._go_live(actions)
        self._dispatch(kind, frame, binary, actions)
        return actions

    def stream_item(self, generation: int, item: StreamItem) -> list[Action]:
        """An item of the event stream opened as `generation`."""
        if generation != self._generation or self.closed:
            return []
        actions: list[Action] = []
        held = self._held
        if held is not None:
            if item.WhichOneof("item") == "caught_up":
                self._held_caught_up = item.caught_up
                if self._held_resumes:
                    self._resume_held(actions)
                    return actions
            held.append(item)
            if len(held) >= self._config.outbound_queue_max:
                # No more than the outbound queue would take: the hold ends, the writer's
                # slow-consumer rule applies from here on.
                self._go_live(actions)
            return actions
        self._on_stream_item(item, actions)
        return actions

    def stream_ended(
        self, generation: int, status: grpc.StatusCode | None, details: str = ""
    ) -> list[Action]:
        """The stream ended with `status` (None: it ended or broke without one).

        A fatal status (FATAL_STREAM_CODES) is reported to the app; anything else resubscribes
        after the backoff from what was delivered.
        """
        if generation != self._generation or self.closed:
            return []
        actions: list[Action] = []
        fatal = status in FATAL_STREAM_CODES
        if self._held is not None:
            # The stream opened at authentication broke before the app spoke.
            if not fatal and self._held_caught_up is None:
                # Before it reported its baselines (so it held nothing yet): keep holding and
                # open it again after the backoff, so that a resume still gets them.
                self._schedule_reopen()
                return actions
            if self._held_resumes:
                if not fatal:
                    self._resume_held(actions)
                    return actions
                # Refused for good: the resumes get the error; their cursors are kept for the
                # stream the next frame opens.
                for resume in self._held_resumes:
                    for cursor in resume.cursors:
                        self.tracked[cursor.conversation_id] = cursor.seq
                    self._pending_resumes.append((resume.request_id, resume.binary))
                self._held_resumes = []
            self._go_live(actions)
        if fatal:
            assert status is not None
            self._stream_failed(status, details, actions)
            return actions
        self._schedule_reopen()
        return actions

    def _schedule_reopen(self) -> None:
        """The next stream opens after the backoff (doubling, with jitter, up to the maximum)."""
        self._reopen_deadline = self._clock.monotonic() + self._backoff * (0.5 + self._jitter() / 2)
        self._backoff = min(self._backoff * 2, self._config.resubscribe_max_s)

    def rpc_done(self, call: CallRpc, answer: bytes) -> list[Action]:
        """The answer of a CallRpc."""
        self._metrics.frame(call.route.frame, "ok")
        return [Send(frames.encode_payload(call.request_id, call.route.slot, answer, call.binary))]

    def rpc_failed(
        self, call: CallRpc, status: grpc.StatusCode, details: str, retry_after_ms: int = 0
    ) -> list[Action]:
        """A CallRpc failed with `status` (UNAVAILABLE when the channel is closing)."""
        self._metrics.frame(call.route.frame, status.name.lower())
        error = frames.encode_error(
            call.request_id,
            frames.error_code_for_status(status),
            details or status.name,
            call.binary,
            retry_after_ms=retry_after_ms,
        )
        return [Send(error)]

    def next_deadline(self) -> float | None:
        """The clock's monotonic time at which tick() has something to do (None: never)."""
        # Called after every input (the socket loop arms its one timer from it): kept cheap.
        soonest: float | None = None
        for deadline in (self._auth_deadline, self._live_deadline, self._reopen_deadline):
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        return soonest

    def tick(self) -> list[Action]:
        """Runs the timers that are due."""
        if self.closed:
            return []
        now = self._clock.monotonic()
        actions: list[Action] = []
        if self._auth_deadline is not None and now >= self._auth_deadline:
            self._auth_deadline = None
            error = frames.encode_error(
                "",
                ErrorCode.ERROR_CODE_UNAUTHENTICATED,
                f"no auth frame within {self._config.auth_timeout_s:g} s",
                self.binary,
            )
            actions.append(Send(error))
            self._close(CLOSE_POLICY_VIOLATION, "auth timeout", True, actions)
            return actions
        if self._live_deadline is not None and now >= self._live_deadline:
            # The app said nothing: what the stream holds (and brings from now on) is live.
            self._go_live(actions)
        if self._reopen_deadline is not None and now >= self._reopen_deadline:
            self._reopen_deadline = None
            self._open_stream(actions)
        return actions

    # -- authentication --------------------------------------------------------------------

    def _before_auth(
        self, kind: str, frame: gateway_pb2.ClientFrame, actions: list[Action]
    ) -> None:
        if kind == "auth":
            self._metrics.frame("auth", "ok")
            actions.extend(self._accept_token(frame.auth.token, frame.request_id, frame.auth))
            return
        self._metrics.frame(kind, "unauthenticated")
        error = frames.encode_error(
            frame.request_id,
            ErrorCode.ERROR_CODE_UNAUTHENTICATED,
            "not authenticated: the first frame must be `auth` "
            "(or offer `bearer.<token>` in Sec-WebSocket-Protocol)",
            self.binary,
        )
        actions.append(Send(error))
        self._count_bad_frame(actions)

    def _accept_token(
        self, token: str, request_id: str, auth: gateway_pb2.AuthRequest | None
    ) -> list[Action]:
        actions: list[Action] = []
        try:
            identity = self._verifier.verify(token)
        except TokenError as exc:
            error = frames.encode_error(
                request_id, ErrorCode.ERROR_CODE_UNAUTHENTICATED, str(exc), self.binary
            )
            actions.append(Send(error))
            actions.append(AuthFailed(str(exc)))
            self._close(CLOSE_POLICY_VIOLATION, "authentication failed", True, actions)
            return actions
        self._auth_deadline = None
        self.authenticated = True
        self.user_id = identity.user_id
        self.device_id = identity.device_id
        actions.append(Authenticated(identity, token, first=True))
        actions.append(Send(self._ready(request_id, self.binary)))
        if auth is not None and len(auth.resume):
            # The auth frame is the app's first frame and carries cursors: subscribe from them.
            self._resume(request_id, auth.resume, "auth.resume", self.binary, actions)
            return actions
        # Subscribe now, so nothing committed from here on is missed, and hold the items until
        # the app says whether it resumes.
        self._held = []
        self._live_deadline = self._clock.monotonic() + self._config.live_start_delay_s
        self._open_stream(actions)
        return actions

    def _reauthenticate(
        self, auth: gateway_pb2.AuthRequest, request_id: str, binary: bool, actions: list[Action]
    ) -> None:
        """A later `auth` frame replaces the token (before it expires) for the same identity."""
        try:
            identity = self._verifier.verify(auth.token)
        except TokenError as exc:
            error = frames.encode_error(
                request_id, ErrorCode.ERROR_CODE_UNAUTHENTICATED, str(exc), binary
            )
            actions.append(Send(error))
            actions.append(AuthFailed(str(exc)))
            self._close(CLOSE_POLICY_VIOLATION, "authentication failed", True, actions)
            return
        if identity.user_id != self.user_id or identity.device_id != self.device_id:
            self._reject(
                FrameError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    "identity_changed",
                    "auth.token is for another user or device than this connection",
                    request_id,
                ),
                actions,
            )
            return
        actions.append(Authenticated(identity, auth.token, first=False))
        actions.append(Send(self._ready(request_id, binary)))
        if len(auth.resume):
            self._resume(request_id, auth.resume, "auth.resume", binary, actions)

    def _ready(self, request_id: str, binary: bool) -> Encoded:
        config = self._config
        frame = gateway_pb2.ServerFrame(request_id=request_id)
        frame.ready.user_id = self.user_id
        frame.ready.device_id = self.device_id
        frame.ready.heartbeat_interval_ms = round(config.heartbeat_interval_s * 1000)
        frame.ready.max_frame_bytes = config.max_frame_bytes
        return frames.encode_frame(frame, binary)

    # -- frames of an authenticated socket ----------------------------------------------------

    def _dispatch(
        self, kind: str, frame: gateway_pb2.ClientFrame, binary: bool, actions: list[Action]
    ) -> None:
        request_id = frame.request_id
        if kind in PRESENCE_FRAMES:
            if not self._presence:
                self._metrics.frame(kind, "unimplemented")
                error = frames.encode_error(
                    request_id,
                    ErrorCode.ERROR_CODE_UNIMPLEMENTED,
                    f"{kind}: presence and typing are not enabled on this gateway",
                    binary,
                )
                actions.append(Send(error))
                return
            actions.append(CallPresence(kind, frame, binary))
            return
        route = self._routes.get(kind)
        if route is not None:
            if kind == "send_message":
                wait_s = self._send_limiter.acquire(self.user_id)
                if wait_s:
                    config = self._config
                    self._metrics.frame(kind, "rate_limited")
                    error = frames.encode_error(
                        request_id,
                        ErrorCode.ERROR_CODE_RESOURCE_EXHAUSTED,
                        f"send rate limit: {config.send_rate_per_s:g} per second, "
                        f"bursts of {config.send_burst}",
                        binary,
                        retry_after_ms=max(1, math.ceil(wait_s * 1000)),
                    )
                    actions.append(Send(error))
                    return
            payload = getattr(frame, kind).SerializeToString()
            actions.append(CallRpc(route, request_id, payload, binary))
        elif kind == "ping":
            self._metrics.frame(kind, "ok")
            pong = gateway_pb2.ServerFrame(request_id=request_id, pong=gateway_pb2.PingResponse())
            actions.append(Send(frames.encode_frame(pong, binary)))
        elif kind == "resume":
            self._metrics.frame(kind, "ok")
            self._resume(request_id, frame.resume.cursors, "resume.cursors", binary, actions)
        elif kind == "auth":
            self._metrics.frame(kind, "ok")
            self._reauthenticate(frame.auth, request_id, binary, actions)
        else:  # pragma: no cover - a new frame type without a handler
            self._reject(
                FrameError(
                    ErrorCode.ERROR_CODE_UNIMPLEMENTED,
                    "unimplemented",
                    f"frame type {kind!r} is not supported by this gateway",
                    request_id,
                ),
                actions,
            )

    def _reject(self, error: FrameError, actions: list[Action]) -> None:
        """Answers a bad frame with an error frame; too many of them close the socket."""
        actions.append(Send(frames.encode_frame_error(error, self.binary)))
        self._count_bad_frame(actions)

    def _count_bad_frame(self, actions: list[Action]) -> None:
        config = self._config
        if self._bad is None:
            # Created on the first bad frame, so well-behaved sockets carry none.
            self._bad = BadFrameCounter(config.bad_frame_limit, config.bad_frame_window_s)
        if self._bad.record(self._clock.monotonic()):
            self._close(CLOSE_POLICY_VIOLATION, "too many bad frames", True, actions)

    def _close(self, code: int, reason: str, flush: bool, actions: list[Action]) -> None:
        self.closed = True
        self._auth_deadline = self._live_deadline = self._reopen_deadline = None
        actions.append(Close(code, reason, flush))

    # -- the event stream ------------------------------------------------------------------

    def _open_stream(self, actions: list[Action]) -> None:
        self._reopen_deadline = None
        self._streaming = True
        self._generation += 1
        request = event_service_pb2.SubscribeEventsRequest(device_id=self.device_id)
        for conversation_id, seq in self.tracked.items():
            request.cursors.add(conversation_id=conversation_id, seq=seq)
        actions.append(OpenStream(self._generation, request))

    def _go_live(self, actions: list[Action]) -> None:
        """Ends the hold (writing what it kept) or, after a fatal stream error, resubscribes."""
        self._live_deadline = None
        if self._held_resumes:
            return  # a resume waits for the held stream's caught_up and then replaces it
        held = self._held
        if held is not None:
            self._held = None
            self._held_caught_up = None
            for item in held:
                self._on_stream_item(item, actions)
        elif not self._streaming:
            self._open_stream(actions)

    def _resume(
        self,
        request_id: str,
        cursors: Sequence[types_pb2.ConversationCursor],
        path: str,
        binary: bool,
        actions: list[Action],
    ) -> None:
        """(Re)starts the stream from the client's cursors and the tracked ones for the rest."""
        error = frames.validate_cursors(cursors, path)
        if error is not None:
            self._reject(FrameError(error.code, error.reason, error.message, request_id), actions)
            return
        if self._held is not None:
            self._live_deadline = None  # the app has spoken: the hold ends with this resume
            self._held_resumes.append(_Resume(request_id, cursors, binary))
            if self._held_caught_up is not None:
                self._resume_held(actions)
            # else: the held stream's baselines are needed first (see stream_item).
            return
        tracked = self.tracked
        for cursor in cursors:
            tracked[cursor.conversation_id] = cursor.seq
        self._pending_resumes.append((request_id, binary))
        self._open_stream(actions)

    def _resume_held(self, actions: list[Action]) -> None:
        """Replaces the held stream by one from the resume cursors and the held baselines."""
        held = self._held or []
        caught_up = self._held_caught_up
        resumes = self._held_resumes
        self._held = None
        self._held_caught_up = None
        self._held_resumes = []
        self._live_deadline = None
        named = {c.conversation_id for r in resumes for c in r.cursors}
        tracked = self.tracked
        if caught_up is not None:
            for baseline in caught_up.baselines:
                if baseline.conversation_id not in named:
                    tracked.setdefault(baseline.conversation_id, baseline.seq)
        for item in held:
            if item.WhichOneof("item") != "event":
                continue
            event = item.event
            cid = event.conversation_id
            if not event.seq:
                # Live signals are not in the log, so the new stream cannot replay them.
                self._on_stream_item(item, actions)
            elif cid not in named and cid not in tracked:
                # A conversation the held stream had no baseline for (joined meanwhile): from
                # its first held event on.
                tracked[cid] = event.seq - 1
        for resume in resumes:
            for cursor in resume.cursors:
                tracked[cursor.conversation_id] = cursor.seq
            self._pending_resumes.append((resume.request_id, resume.binary))
        self._open_stream(actions)

    def _on_stream_item(self, response: StreamItem, actions: list[Action]) -> None:
        which = response.WhichOneof("item")
        if which == "event":
            event = response.event
            seq = event.seq
            if seq:
                tracked = self.tracked
                conversation_id = event.conversation_id
                if seq <= tracked.get(conversation_id, 0):
                    return  # already delivered (a replay after a resubscription)
                tracked[conversation_id] = seq
            elif event.HasField("conversation_created"):
                # A new conversation's log starts at 0: a resubscription replays it from there.
                self.tracked.setdefault(event.conversation_id, 0)
            actions.append(Send(self._event_frames.encode(event, self.binary)))
        elif which == "caught_up":
            self._backoff = self._config.resubscribe_initial_s
            revoked = response.caught_up.revoked_conversation_ids
            for conversation_id in revoked:
                self.tracked.pop(conversation_id, None)
            # Where live events of the other conversations start: a resubscription after a
            # break replays from there, so events of the break reach this device too.
            for baseline in response.caught_up.baselines:
                self.tracked.setdefault(baseline.conversation_id, baseline.seq)
            for request_id, binary in self._pending_resumes:
                frame = gateway_pb2.ServerFrame(request_id=request_id)
                frame.resumed.revoked_conversation_ids.extend(revoked)
                actions.append(Send(frames.encode_frame(frame, binary)))
            self._pending_resumes.clear()
        # else: an item type this gateway does not know yet

    def _stream_failed(self, status: grpc.StatusCode, details: str, actions: list[Action]) -> None:
        code = frames.error_code_for_status(status)
        message = f"event stream: {details or status.name}"
        waiting = self._pending_resumes or [("", self.binary)]
        for request_id, binary in waiting:
            actions.append(Send(frames.encode_error(request_id, code, message, binary)))
        self._pending_resumes = []
        self._streaming = False
        if status is grpc.StatusCode.UNAUTHENTICATED:
            # The token expired or was revoked since the connection authenticated.
            self._close(CLOSE_POLICY_VIOLATION, "authentication failed", True, actions)
        # else: the next client frame opens a new stream (a resume with other cursors, say).
