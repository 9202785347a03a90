"""media_service asks chat_service (AccessService, service token with scope `chat.access`)
whether a user is a member now and whether a message they may read attaches a media id."""

from __future__ import annotations

from chatmesh.chat.v1 import access_service_pb2 as pb

from chatmesh_common.access_client import AccessServiceClient
from chatmesh_common.auth import ServiceCredential
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS

SERVICE_NAME = "media"
SCOPES = (SCOPE_CHAT_ACCESS,)


def media_credential(service_secret: str) -> ServiceCredential:
    return ServiceCredential(service_secret, SERVICE_NAME, SCOPES)


class GrpcMediaAccess(AccessServiceClient):
    """MediaAccess over AccessService."""

    async def membership(self, user_id: str, conversation_id: str) -> int | None:
        response = await self.call(
            "CheckMembership",
            pb.CheckMembershipRequest(user_id=user_id, conversation_id=conversation_id),
        )
        return int(response.kind) if response.member else None

    async def message_attaches(
        self, user_id: str, conversation_id: str, seq: int, media_id: str
    ) -> bool:
        response = await self.call(
            "GetSearchHits",
            pb.GetSearchHitsRequest(
                user_id=user_id, refs=[pb.MessageRef(conversation_id=conversation_id, seq=seq)]
            ),
        )
        return any(media_id in m.attachments for m in response.messages)
