"""The gateway's side of presence_service: its methods, and one heartbeat loop for all sockets.

Each authenticated socket is one presence connection (`Connect` with a gateway-chosen
`connection_id`, `Disconnect` when it closes). Heartbeats are not a task per socket: one loop per
gateway wakes about every second and heartbeats, in bounded batches, the sockets whose heartbeat
is due (each socket is due every `heartbeat_interval` from `ConnectResponse`). The socket's side
(Connect, Watch, the request frames) is in gateway_ws/session.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import grpc
from chatmesh.presence.v1 import presence_service_pb2 as pb
from google.protobuf.message import Message

if TYPE_CHECKING:
    from gateway_ws.session import Session

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
# Matches presence_service's limits, so a bad id is refused at the edge with the field named.
MAX_USER_ID_CHARS: Final = 128

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


async def heartbeat_loop(
    sessions: Iterable[Session],
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
