"""search_service asks chat_service (AccessService, service token with scope `chat.access`) who
may see what: the caller's conversations now, and the current state of each hit."""

from __future__ import annotations

from collections.abc import Sequence

from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2

from chatmesh_common.access_client import AccessServiceClient
from chatmesh_common.auth import ServiceCredential
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS

SERVICE_NAME = "search"
SCOPES = (SCOPE_CHAT_ACCESS,)


def search_credential(service_secret: str) -> ServiceCredential:
    return ServiceCredential(service_secret, SERVICE_NAME, SCOPES)


class GrpcSearchAccess(AccessServiceClient):
    """SearchAccess over AccessService."""

    async def searchable_conversations(self, user_id: str) -> list[str]:
        response = await self.call(
            "ListSearchableConversations", pb.ListSearchableConversationsRequest(user_id=user_id)
        )
        return list(response.conversation_ids)

    async def current_messages(
        self, user_id: str, refs: Sequence[tuple[str, int]]
    ) -> list[types_pb2.Message]:
        if not refs:
            return []
        response = await self.call(
            "GetSearchHits",
            pb.GetSearchHitsRequest(
                user_id=user_id,
                refs=[pb.MessageRef(conversation_id=c, seq=s) for c, s in refs],
            ),
        )
        return list(response.messages)
