"""The gRPC servicer of presence_service: protos in and out, tokens verified, status codes out."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from chatmesh.presence.v1 import presence_service_pb2 as pb
from chatmesh.presence.v1 import presence_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration

from chatmesh_common.auth import Identity, TokenError, TokenVerifier, bearer_token
from chatmesh_common.grpc_server import Context

from .backends.base import BackendUnavailable, Status
from .presence import Presence, PresenceError, View
from .presence import timestamp as _timestamp

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def _status(value: int) -> Status | None:
    return Status(value) if value in Status._value2member_map_ else None


def presence_pb(view: View) -> pb.UserPresence:
    message = pb.UserPresence(
        user_id=view.user_id,
        state=int(view.state),  # type: ignore[arg-type]
        custom_text=view.custom_text,
        status=int(view.status or 0),  # type: ignore[arg-type]
    )
    if view.last_seen is not None:
        message.last_seen.CopyFrom(_timestamp(view.last_seen))
    return message


async def _abort(context: Context, exc: Exception) -> None:
    if isinstance(exc, PresenceError):
        if exc.retry_after_s > 0:
            context.set_trailing_metadata(
                (("retry-after-ms", str(int(exc.retry_after_s * 1000) + 1)),)
            )
        await context.abort(exc.code, exc.message)
    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


def _rpc(
    method: Callable[[Any, Req, Identity, str], Awaitable[Resp]],
) -> Callable[[Any, Req, Context], Awaitable[Resp]]:
    """Authenticates the caller and turns refusals into status codes."""

    @functools.wraps(method)
    async def handler(self: PresenceServicer, request: Req, context: Context) -> Resp:
        identity, token = await self._authenticate(context)
        try:
            return await method(self, request, identity, token)
        except (PresenceError, BackendUnavailable) as exc:
            await _abort(context, exc)
        raise AssertionError("unreachable")

    return handler


class PresenceServicer(presence_service_pb2_grpc.PresenceServiceServicer):
    def __init__(self, presence: Presence, verifier: TokenVerifier) -> None:
        self.presence = presence
        self.verifier = verifier

    async def _authenticate(self, context: Context) -> tuple[Identity, str]:
        token = bearer_token(context.invocation_metadata())
        try:
            return self.verifier.verify(token), token
        except TokenError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise

    @_rpc
    async def Connect(
        self, request: pb.ConnectRequest, who: Identity, _token: str
    ) -> pb.ConnectResponse:
        view = await self.presence.connect(who, request.connection_id)
        settings = self.presence.settings
        return pb.ConnectResponse(
            ttl=_duration(settings.ttl_s),
            heartbeat_interval=_duration(settings.heartbeat_interval_s),
            presence=presence_pb(view),
        )

    @_rpc
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, who: Identity, _token: str
    ) -> pb.HeartbeatResponse:
        status = await self.presence.heartbeat(
            who, request.connection_id, _status(request.known_status)
        )
        return pb.HeartbeatResponse(status=int(status))  # type: ignore[arg-type]

    @_rpc
    async def Disconnect(
        self, request: pb.DisconnectRequest, who: Identity, _token: str
    ) -> pb.DisconnectResponse:
        await self.presence.disconnect(who, request.connection_id)
        return pb.DisconnectResponse()

    @_rpc
    async def SetStatus(
        self, request: pb.SetStatusRequest, who: Identity, _token: str
    ) -> pb.SetStatusResponse:
        view = await self.presence.set_status(who, _status(request.status), request.custom_text)
        return pb.SetStatusResponse(presence=presence_pb(view))

    @_rpc
    async def GetPresence(
        self, request: pb.GetPresenceRequest, who: Identity, token: str
    ) -> pb.GetPresenceResponse:
        views = await self.presence.get(who, token, request.user_ids)
        return pb.GetPresenceResponse(presences=[presence_pb(v) for v in views])

    @_rpc
    async def SendTyping(
        self, request: pb.SendTypingRequest, who: Identity, token: str
    ) -> pb.SendTypingResponse:
        expires_at = await self.presence.send_typing(
            who, token, request.conversation_id, request.typing
        )
        return pb.SendTypingResponse(expires_at=_timestamp(expires_at))

    async def Watch(  # type: ignore[override]
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        who, token = await self._authenticate(context)
        try:
            # WatchResponse.typing is no longer sent: typing goes to the event streams.
            async for view in self.presence.watch(who, token, request.user_ids):
                yield pb.WatchResponse(presence=presence_pb(view))
        except (PresenceError, BackendUnavailable) as exc:
            await _abort(context, exc)
