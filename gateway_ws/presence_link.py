"""The gateway's side of presence_service: its methods, each socket's presence connection, and
one heartbeat loop for all sockets.

Each authenticated socket is one presence connection (`Connect` with a gateway-chosen
`connection_id`, `Disconnect` when it closes), held by its `PresenceLink`, which also serves the
socket's presence frames (`presence_subscribe`, `presence_unsubscribe`, `set_status`, `typing`)
and, only while the socket watches users, one `PresenceService.Watch` stream whose items become
`presence_event` frames. Presence is best effort: its failures are logged and answered, never
close the socket. Heartbeats are not a task per socket: one loop per gateway wakes about every
second and heartbeats, in bounded batches, the sockets whose heartbeat is due (each socket is due
every `heartbeat_interval` from `ConnectResponse`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, cast

import grpc
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2 as pb
from google.protobuf.message import Message

from chatmesh_common.limits import LIMITS
from chatmesh_common.request_id import request_id_metadata
from gateway_ws import frames
from gateway_ws.config import GatewayConfig
from gateway_ws.frames import Encoded, ErrorCode
from gateway_ws.metrics import FrameMetrics
from gateway_ws.upstream import EOF, FATAL_STREAM_CODES, retry_after_ms

log = logging.getLogger(__name__)

PRESENCE_SERVICE: Final = "chatmesh.presence.v1.PresenceService"
CONNECT_TIMEOUT_S: Final = 2.0
DISCONNECT_TIMEOUT_S: Final = 1.0
HEARTBEAT_TIMEOUT_S: Final = 2.0
# Used until a ConnectResponse says otherwise (presence_service's default: TTL 30 s / 3).
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 10.0
# Heartbeats in flight at once from one gateway; the rest of a tick's due sockets wait their turn.
HEARTBEAT_BATCH: Final = 256
# How often the loop looks for due sockets.
HEARTBEAT_TICK_S: Final = 1.0
MAX_USER_ID_CHARS: Final = LIMITS.max_id_chars

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)
Unary = grpc.aio.UnaryUnaryMultiCallable


def _unary(
    channel: grpc.aio.Channel, name: str, request: type[_Req], response: type[_Resp]
) -> Unary[_Req, _Resp]:
    return channel.unary_unary(
        f"/{PRESENCE_SERVICE}/{name}",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )


@dataclass(frozen=True, slots=True)
class PresenceMethods:
    """PresenceService's methods on one channel (messages parsed: they are small)."""

    connect: Unary[pb.ConnectRequest, pb.ConnectResponse]
    heartbeat: Unary[pb.HeartbeatRequest, pb.HeartbeatResponse]
    disconnect: Unary[pb.DisconnectRequest, pb.DisconnectResponse]
    set_status: Unary[pb.SetStatusRequest, pb.SetStatusResponse]
    get_presence: Unary[pb.GetPresenceRequest, pb.GetPresenceResponse]
    send_typing: Unary[pb.SendTypingRequest, pb.SendTypingResponse]
    watch: grpc.aio.UnaryStreamMultiCallable[pb.WatchRequest, pb.WatchResponse]

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> PresenceMethods:
        return cls(
            connect=_unary(channel, "Connect", pb.ConnectRequest, pb.ConnectResponse),
            heartbeat=_unary(channel, "Heartbeat", pb.HeartbeatRequest, pb.HeartbeatResponse),
            disconnect=_unary(channel, "Disconnect", pb.DisconnectRequest, pb.DisconnectResponse),
            set_status=_unary(channel, "SetStatus", pb.SetStatusRequest, pb.SetStatusResponse),
            get_presence=_unary(
                channel, "GetPresence", pb.GetPresenceRequest, pb.GetPresenceResponse
            ),
            send_typing=_unary(channel, "SendTyping", pb.SendTypingRequest, pb.SendTypingResponse),
            watch=channel.unary_stream(
                f"/{PRESENCE_SERVICE}/Watch",
                request_serializer=pb.WatchRequest.SerializeToString,
                response_deserializer=pb.WatchResponse.FromString,
            ),
        )


def validate_user_ids(user_ids: Iterable[str], path: str) -> str | None:
    """An error message when an id is empty or too long; `path` names the list."""
    for index, user_id in enumerate(user_ids):
        if not 0 < len(user_id) <= MAX_USER_ID_CHARS:
            return f"{path}[{index}] must be 1 to {MAX_USER_ID_CHARS} characters"
    return None


class Heartbeating(Protocol):
    """What the heartbeat loop needs of a socket."""

    def presence_heartbeat_due(self, now: float) -> bool: ...

    def start_presence_heartbeat(self) -> asyncio.Task[None]: ...


async def heartbeat_loop(
    sessions: Iterable[Heartbeating],
    now: Callable[[], float],
    tick_s: float = HEARTBEAT_TICK_S,
    batch: int = HEARTBEAT_BATCH,
) -> None:
    """Heartbeats every due socket, forever; one task per gateway (cancel it to stop).

    A failed heartbeat is logged and the socket is tried again an interval later: the TTL is
    three intervals, so one lost heartbeat does not turn a user offline.
    """
    while True:
        await asyncio.sleep(tick_s)
        current = now()
        due = [session for session in list(sessions) if session.presence_heartbeat_due(current)]
        for start in range(0, len(due), batch):
            # Asked again: a socket may have closed while the previous batch ran.
            tasks = [
                session.start_presence_heartbeat()
                for session in due[start : start + batch]
                if session.presence_heartbeat_due(current)
            ]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


class Outbox(Protocol):
    """Where a link's frames go: the socket's writer (gateway_ws/writer.py)."""

    @property
    def closing(self) -> object | None: ...

    def emit(self, data: Encoded) -> None: ...


class Encoding(Protocol):
    """The encoding of the client's last frame (gateway_ws/protocol.py's Protocol)."""

    @property
    def binary(self) -> bool: ...


@dataclass(eq=False, slots=True)
class HeartbeatInterval:
    """How often each socket heartbeats: the last ConnectResponse.heartbeat_interval (shared
    by every socket of a gateway)."""

    seconds: float = DEFAULT_HEARTBEAT_INTERVAL_S


class PresenceLink:
    """One socket's presence connection, its presence frames and its Watch stream."""

    __slots__ = (
        "_config",
        "_conn_id",
        "_connect_task",
        "_encoding",
        "_hb_due",
        "_hb_task",
        "_interval",
        "_loop",
        "_metadata",
        "_methods",
        "_metrics",
        "_out",
        "_status",
        "_subs",
        "_user_id",
        "_watch_task",
    )

    def __init__(
        self,
        methods: PresenceMethods,
        interval: HeartbeatInterval,
        config: GatewayConfig,
        metrics: FrameMetrics,
        out: Outbox,
        encoding: Encoding,
    ) -> None:
        self._methods = methods
        self._interval = interval
        self._config = config
        self._metrics = metrics
        # The socket's writer (frames go there; no new watch once it is closing) and protocol
        # (pushed frames follow the encoding of the client's last frame).
        self._out = out
        self._encoding = encoding
        self._loop = asyncio.get_running_loop()
        self._user_id = ""
        self._metadata: tuple[tuple[str, str], ...] = ()
        # The connection id ("" before authentication), the status last learned, when the next
        # heartbeat is due (loop.time(); 0.0: not scheduled yet, -1.0: torn down), the Connect /
        # heartbeat calls in flight, the watched users (None: none) and their Watch.
        self._conn_id = ""
        self._status: pb.UserStatus = pb.USER_STATUS_UNSPECIFIED
        self._hb_due = 0.0
        self._connect_task: asyncio.Task[None] | None = None
        self._hb_task: asyncio.Task[None] | None = None
        self._subs: set[str] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    # -- the connection ------------------------------------------------------------------

    def authenticated(self, user_id: str, metadata: tuple[tuple[str, str], ...]) -> None:
        """The socket authenticated (first time: Connect) or renewed its token."""
        self._user_id = user_id
        self._metadata = metadata
        if not self._conn_id:
            # In the background: registering never delays frames.
            self._conn_id = uuid.uuid4().hex
            self._connect_task = self._loop.create_task(self._connect())
        elif self._subs and self._watch_task is None:
            # The watch stopped (its token expired, say): the new token restarts it.
            self._restart_watch()

    async def _connect(self) -> None:
        # A failed Connect is only logged: the heartbeats that follow register it as well.
        response = await self._best_effort(
            "Connect",
            self._methods.connect(
                pb.ConnectRequest(connection_id=self._conn_id),
                metadata=self._metadata,
                timeout=CONNECT_TIMEOUT_S,
            ),
            logging.WARNING,
        )
        self._connect_task = None
        if response is not None:
            self._status = response.presence.status
            interval = response.heartbeat_interval.ToNanoseconds() / 1e9
            if interval > 0:
                self._interval.seconds = interval
        if self._hb_due == 0.0:  # not torn down meanwhile (-1.0)
            self._hb_due = self._loop.time() + self._interval.seconds

    async def _best_effort(
        self, name: str, call: Awaitable[_Resp], level: int = logging.INFO
    ) -> _Resp | None:
        """The answer of a connection call, or None when it failed (logged, never raised)."""
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            log.log(
                level,
                "presence %s of %s failed: %s %s",
                name,
                self._user_id,
                exc.code().name,
                exc.details(),
            )
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            log.debug("presence %s of %s: channel closing (%s)", name, self._user_id, exc)
        except Exception:
            log.exception("presence %s of %s failed", name, self._user_id)
        return None

    def heartbeat_due(self, now: float) -> bool:
        """Whether the gateway's heartbeat loop should heartbeat this connection now."""
        due = self._hb_due
        return 0.0 < due <= now and self._hb_task is None

    def start_heartbeat(self) -> asyncio.Task[None]:
        """One Heartbeat call, as a task the heartbeat loop waits for (with its batch)."""
        self._hb_due = self._loop.time() + self._interval.seconds
        task = self._hb_task = self._loop.create_task(self._heartbeat())
        return task

    async def _heartbeat(self) -> None:
        # UNAUTHENTICATED (an expired token) heals with the next `auth` frame.
        response = await self._best_effort(
            "Heartbeat",
            self._methods.heartbeat(
                pb.HeartbeatRequest(connection_id=self._conn_id, known_status=self._status),
                metadata=self._metadata,
                timeout=HEARTBEAT_TIMEOUT_S,
            ),
        )
        self._hb_task = None
        if response is not None and response.status:
            self._status = response.status

    async def close(self) -> None:
        """Stops the watch, lets Connect / a heartbeat in flight finish, then Disconnect."""
        if not self._conn_id:
            return
        self._hb_due = -1.0  # no more heartbeats
        self._subs = None
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
            await self._methods.disconnect(
                pb.DisconnectRequest(connection_id=self._conn_id),
                metadata=self._metadata,
                timeout=DISCONNECT_TIMEOUT_S,
            )
        except Exception as exc:  # best effort: the TTL turns the connection offline anyway
            log.debug("presence Disconnect of %s failed: %s", self._user_id, exc)

    # -- presence frames -----------------------------------------------------------------

    def handle(
        self, kind: str, frame: gateway_pb2.ClientFrame, binary: bool
    ) -> Coroutine[Any, Any, None] | None:
        """Answers a presence frame at once, or returns the call to run (as a request task)."""
        request_id = frame.request_id
        if kind == "presence_unsubscribe":
            self._metrics.frame(kind, "ok")
            self._unsubscribe(frame.presence_unsubscribe.user_ids)
            answer = gateway_pb2.ServerFrame(request_id=request_id)
            answer.presence_unsubscribe.SetInParent()
            self._out.emit(frames.encode_frame(answer, binary))
            return None
        if kind == "presence_subscribe":
            user_ids = frame.presence_subscribe.user_ids
            message = validate_user_ids(user_ids, "presence_subscribe.user_ids")
            if message is None:
                message = self._subscription_limit_error(user_ids)
            if message is not None:
                self._invalid(kind, request_id, message, binary)
                return None
        return self._request(kind, frame, binary)

    def _invalid(self, kind: str, request_id: str, message: str, binary: bool) -> None:
        self._metrics.frame(kind, "invalid_value")
        self._out.emit(
            frames.encode_error(request_id, ErrorCode.ERROR_CODE_INVALID_ARGUMENT, message, binary)
        )

    def _subscription_limit_error(self, user_ids: Sequence[str]) -> str | None:
        limit = self._config.max_presence_subscriptions
        total = len(self._subs.union(user_ids) if self._subs else set(user_ids))
        if len(user_ids) > limit or total > limit:
            return (
                f"presence_subscribe would watch {max(total, len(user_ids))} users; "
                f"at most {limit} per connection"
            )
        return None

    async def _request(self, kind: str, frame: gateway_pb2.ClientFrame, binary: bool) -> None:
        methods = self._methods
        request_id = frame.request_id
        answer = gateway_pb2.ServerFrame(request_id=request_id)
        timeout = self._config.rpc_timeout_s
        # With the client's request id, so presence_service's logs show it.
        metadata = self._metadata + request_id_metadata(request_id)
        try:
            if kind == "presence_subscribe":
                user_ids = list(frame.presence_subscribe.user_ids)
                answer.presence_subscribe.SetInParent()
                if user_ids:
                    got = await methods.get_presence(
                        pb.GetPresenceRequest(user_ids=user_ids),
                        metadata=metadata,
                        timeout=timeout,
                    )
                    # Checked again: another subscribe may have finished meanwhile.
                    message = self._subscription_limit_error(user_ids)
                    if message is not None:
                        self._invalid(kind, request_id, message, binary)
                        return
                    self._subscribe(user_ids)
                    answer.presence_subscribe.presences.extend(got.presences)
            elif kind == "set_status":
                status = await methods.set_status(
                    frame.set_status, metadata=metadata, timeout=timeout
                )
                if status.presence.status:
                    self._status = status.presence.status
                answer.set_status.CopyFrom(status)
            else:  # typing
                typing = await methods.send_typing(frame.typing, metadata=metadata, timeout=timeout)
                answer.typing.CopyFrom(typing)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            self._metrics.frame(kind, code.name.lower())
            self._out.emit(
                frames.encode_error(
                    request_id,
                    frames.error_code_for_status(code),
                    exc.details() or code.name,
                    binary,
                    retry_after_ms=retry_after_ms(exc),
                )
            )
            return
        except (grpc.aio.UsageError, grpc.aio.InternalError) as exc:
            self._metrics.frame(kind, "unavailable")
            self._out.emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_UNAVAILABLE, f"presence service: {exc}", binary
                )
            )
            return
        except Exception:
            log.exception("%s call of %s failed", kind, self._user_id)
            self._metrics.frame(kind, "internal")
            self._out.emit(
                frames.encode_error(
                    request_id, ErrorCode.ERROR_CODE_INTERNAL, "gateway error", binary
                )
            )
            return
        self._metrics.frame(kind, "ok")
        self._out.emit(frames.encode_frame(answer, binary))

    # -- the watch -----------------------------------------------------------------------

    def _subscribe(self, user_ids: Iterable[str]) -> None:
        subs = self._subs
        if subs is None:
            subs = self._subs = set()
        before = len(subs)
        subs.update(user_ids)
        if len(subs) != before or self._watch_task is None:
            self._restart_watch()

    def _unsubscribe(self, user_ids: Iterable[str]) -> None:
        subs = self._subs
        if not subs:
            return
        before = len(subs)
        subs.difference_update(user_ids)
        if not subs:
            self._subs = None
        if len(subs) != before:
            self._restart_watch()

    def _restart_watch(self) -> None:
        """Watches the current set: the new stream first, the old one cancelled once it runs."""
        old = self._watch_task
        subs = self._subs
        if not subs or self._out.closing is not None:
            self._watch_task = None
            if old is not None:
                old.cancel()
            return
        self._watch_task = self._loop.create_task(self._watch_loop(sorted(subs), old))

    async def _watch_loop(self, user_ids: list[str], old: asyncio.Task[None] | None) -> None:
        config = self._config
        backoff = config.resubscribe_initial_s
        try:
            while True:
                call = self._methods.watch(
                    pb.WatchRequest(user_ids=user_ids), metadata=self._metadata
                )
                try:
                    while True:
                        item = await call.read()
                        if old is not None:
                            # The new stream answers: the old one (the previous set) can go.
                            old.cancel()
                            old = None
                        if item is EOF:
                            break
                        data = frames.encode_watch_response(
                            cast(pb.WatchResponse, item), self._encoding.binary
                        )
                        if data is not None:
                            self._out.emit(data)
                        backoff = config.resubscribe_initial_s
                except grpc.aio.AioRpcError as exc:
                    status = exc.code()
                    if status in FATAL_STREAM_CODES:
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
                # A stream of its own, not the socket protocol's: its backoff is real time.
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, config.resubscribe_max_s)
        finally:
            if old is not None:
                old.cancel()
            if self._watch_task is asyncio.current_task():
                self._watch_task = None
