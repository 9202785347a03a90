"""notify_service asks chat_service (AccessService, scope `chat.access`) who a message may push
to and each user's unread total, and presence_service (scope `presence.online`) who is online.
The last two are asked through SharedLookup: lanes asking while a call runs share the next."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chatmesh_common.access_client import AccessServiceClient
from chatmesh_common.auth import ServiceCredential
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS, SCOPE_PRESENCE_ONLINE
from chatmesh_common.rpc import RpcError

from .shared_lookup import SharedLookup

log = logging.getLogger(__name__)

SERVICE_NAME = "notify"
SCOPES = (SCOPE_CHAT_ACCESS, SCOPE_PRESENCE_ONLINE)
# The most users one GetOnlineUsers / GetUnreadTotals call names.
PRESENCE_BATCH = 500
UNREAD_BATCH = 1000


def notify_credential(service_secret: str) -> ServiceCredential:
    return ServiceCredential(service_secret, SERVICE_NAME, SCOPES)


class Unavailable(Exception):
    """chat_service or presence_service did not answer: the event is retried later."""


class NotFound(Exception):
    """The conversation or message no longer exists: nothing to push."""


@dataclass(frozen=True, slots=True)
class Audience:
    conversation: types_pb2.Conversation
    message: types_pb2.Message
    members: tuple[pb.PushAudienceMember, ...]


class NotifyAccess(Protocol):
    async def push_audience(self, conversation_id: str, seq: int) -> Audience: ...

    async def unread_totals(self, user_ids: Sequence[str]) -> dict[str, int]: ...

    async def online_users(self, user_ids: Sequence[str]) -> set[str]: ...


class GrpcNotifyAccess:
    """AccessService (the shared client) and PresenceService over gRPC; channels may be given
    later (`chatmesh dev`)."""

    def __init__(
        self,
        credential: ServiceCredential,
        chat_channel: grpc.aio.Channel | None = None,
        presence_channel: grpc.aio.Channel | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._credential = credential
        self._timeout_s = timeout_s
        self._chat = AccessServiceClient(
            credential, timeout_s=timeout_s, passed_on=(grpc.StatusCode.NOT_FOUND,)
        )
        self._presence: Any = None
        self._unread = SharedLookup(self._unread_totals)
        self._online = SharedLookup(self._online_users)
        if chat_channel is not None and presence_channel is not None:
            self.set_channels(chat_channel, presence_channel)

    def set_channels(
        self, chat_channel: grpc.aio.Channel, presence_channel: grpc.aio.Channel
    ) -> None:
        self._chat.set_channel(chat_channel)
        self._presence = presence_service_pb2_grpc.PresenceServiceStub(presence_channel)

    async def _ask_chat(self, method: str, request: Any) -> Any:
        try:
            return await self._chat.call(method, request)
        except RpcError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.message) from exc
            raise Unavailable(f"{method}: {exc.message}") from exc

    async def _ask_presence(self, request: Any) -> Any:
        if self._presence is None:
            raise Unavailable("presence not connected yet")
        try:
            return await self._presence.GetOnlineUsers(
                request, metadata=self._credential.metadata(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("GetOnlineUsers failed: %s %s", exc.code().name, exc.details())
            raise Unavailable(f"GetOnlineUsers: {exc.code().name}") from exc

    async def push_audience(self, conversation_id: str, seq: int) -> Audience:
        response = await self._ask_chat(
            "GetPushAudience", pb.GetPushAudienceRequest(conversation_id=conversation_id, seq=seq)
        )
        return Audience(response.conversation, response.message, tuple(response.members))

    async def unread_totals(self, user_ids: Sequence[str]) -> dict[str, int]:
        return await self._unread.ask(user_ids)

    async def online_users(self, user_ids: Sequence[str]) -> set[str]:
        return set(await self._online.ask(user_ids))

    async def _unread_totals(self, user_ids: Sequence[str]) -> dict[str, int]:
        totals: dict[str, int] = {}
        users = list(user_ids)
        for start in range(0, len(users), UNREAD_BATCH):
            response = await self._ask_chat(
                "GetUnreadTotals",
                pb.GetUnreadTotalsRequest(user_ids=users[start : start + UNREAD_BATCH]),
            )
            totals.update({t.user_id: t.unread for t in response.totals})
        return totals

    async def _online_users(self, user_ids: Sequence[str]) -> dict[str, bool]:
        online: dict[str, bool] = {}
        users = list(user_ids)
        for start in range(0, len(users), PRESENCE_BATCH):
            response = await self._ask_presence(
                presence_pb.GetOnlineUsersRequest(user_ids=users[start : start + PRESENCE_BATCH])
            )
            online.update(dict.fromkeys(response.online_user_ids, True))
        return online
