"""The gRPC servicer of presence_service: protos in and out, callers authenticated and refusals
turned into status codes by the shared wrappers (chatmesh_common.rpc)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from chatmesh.presence.v1 import presence_service_pb2 as pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chatmesh_common.auth import Identity, ServiceIdentity
from chatmesh_common.rpc import Authenticator, RpcServicer, duration, stream, timestamp, unary

from .backends.base import BackendUnavailable, Status
from .presence import Presence, View


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
        message.last_seen.CopyFrom(timestamp(view.last_seen))
    return message


class PresenceServicer(RpcServicer, presence_service_pb2_grpc.PresenceServiceServicer):
    SERVICE = pb.DESCRIPTOR.services_by_name["PresenceService"].full_name
    ERRORS = {BackendUnavailable: grpc.StatusCode.UNAVAILABLE}

    def __init__(self, presence: Presence, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.presence = presence

    @unary
    async def Connect(self, request: pb.ConnectRequest, who: Identity) -> pb.ConnectResponse:
        view = await self.presence.connect(who, request.connection_id)
        settings = self.presence.settings
        return pb.ConnectResponse(
            ttl=duration(settings.ttl_s),
            heartbeat_interval=duration(settings.heartbeat_interval_s),
            presence=presence_pb(view),
        )

    @unary
    async def Heartbeat(self, request: pb.HeartbeatRequest, who: Identity) -> pb.HeartbeatResponse:
        status = await self.presence.heartbeat(
            who, request.connection_id, _status(request.known_status)
        )
        return pb.HeartbeatResponse(status=int(status))  # type: ignore[arg-type]

    @unary
    async def Disconnect(
        self, request: pb.DisconnectRequest, who: Identity
    ) -> pb.DisconnectResponse:
        await self.presence.disconnect(who, request.connection_id)
        return pb.DisconnectResponse()

    @unary
    async def SetStatus(self, request: pb.SetStatusRequest, who: Identity) -> pb.SetStatusResponse:
        view = await self.presence.set_status(who, _status(request.status), request.custom_text)
        return pb.SetStatusResponse(presence=presence_pb(view))

    @unary
    async def GetPresence(
        self, request: pb.GetPresenceRequest, who: Identity
    ) -> pb.GetPresenceResponse:
        views = await self.presence.get(who, request.user_ids)
        return pb.GetPresenceResponse(presences=[presence_pb(v) for v in views])

    @unary
    async def SendTyping(
        self, request: pb.SendTypingRequest, who: Identity
    ) -> pb.SendTypingResponse:
        expires_at = await self.presence.send_typing(who, request.conversation_id, request.typing)
        return pb.SendTypingResponse(expires_at=timestamp(expires_at))

    @unary
    async def GetOnlineUsers(
        self, request: pb.GetOnlineUsersRequest, _caller: ServiceIdentity
    ) -> pb.GetOnlineUsersResponse:
        online = await self.presence.online_users(request.user_ids)
        return pb.GetOnlineUsersResponse(online_user_ids=online)

    @stream
    async def Watch(
        self, request: pb.WatchRequest, who: Identity
    ) -> AsyncIterator[pb.WatchResponse]:
        # WatchResponse.typing is no longer sent: typing goes to the event streams.
        async for view in self.presence.watch(who, request.user_ids):
            yield pb.WatchResponse(presence=presence_pb(view))
