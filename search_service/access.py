"""search_service asks chat_service (AccessService, service token with scope `chat.access`) who
may see what: the caller's conversations now, and the current state of each hit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import access_service_pb2_grpc, types_pb2

from chatmesh_common.auth import ServiceCredential
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS
from chatmesh_common.rpc import RpcError

log = logging.getLogger(__name__)

SERVICE_NAME = "search"
SCOPES = (SCOPE_CHAT_ACCESS,)


def search_credential(service_secret: str) -> ServiceCredential:
    return ServiceCredential(service_secret, SERVICE_NAME, SCOPES)


class GrpcSearchAccess:
    """AccessService over gRPC; the channel may be given later (`chatmesh dev`)."""

    def __init__(
        self,
        credential: ServiceCredential,
        channel: grpc.aio.Channel | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._credential = credential
        self._stub: Any = None
        self._timeout_s = timeout_s
        if channel is not None:
            self.set_channel(channel)

    def set_channel(self, channel: grpc.aio.Channel) -> None:
        self._stub = access_service_pb2_grpc.AccessServiceStub(channel)

    async def _call(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "access service not connected yet")
        try:
            return await getattr(self._stub, method)(
                request, metadata=self._credential.metadata(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("access check %s failed: %s", method, exc.details())
            # Never answer without an access check: the caller sees UNAVAILABLE.
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"access check: {exc.details()}") from exc

    async def searchable_conversations(self, user_id: str) -> list[str]:
        response = await self._call(
            "ListSearchableConversations", pb.ListSearchableConversationsRequest(user_id=user_id)
        )
        return list(response.conversation_ids)

    async def current_messages(
        self, user_id: str, refs: Sequence[tuple[str, int]]
    ) -> list[types_pb2.Message]:
        if not refs:
            return []
        response = await self._call(
            "GetSearchHits",
            pb.GetSearchHitsRequest(
                user_id=user_id,
                refs=[pb.MessageRef(conversation_id=c, seq=s) for c, s in refs],
            ),
        )
        return list(response.messages)
