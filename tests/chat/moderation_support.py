"""A moderator's client for chat_service tests: ModerationService with a `chat.moderate` token."""

from __future__ import annotations

from typing import Any

from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2
from chatmesh.moderation.v1 import moderation_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_service_token
from chatmesh_common.credentials import SCOPE_CHAT_MODERATE

from .support import SERVICE_SECRET, ChannelSource, Client, Metadata

MODERATOR = "ops"


class Moderator:
    """ModerationService stubs with an operator's service token (subject `ops`)."""

    def __init__(self, harness: ChannelSource, scopes: tuple[str, ...] = (SCOPE_CHAT_MODERATE,)):
        self._harness = harness
        self.md: Metadata = auth_metadata(issue_service_token(SERVICE_SECRET, MODERATOR, scopes))

    @property
    def moderation(self) -> Any:
        return moderation_service_pb2_grpc.ModerationServiceStub(self._harness.channel)


async def report_message(
    who: Client, conversation_id: str, seq: int, details: str = ""
) -> pb.ReportMessageResponse:
    response: pb.ReportMessageResponse = await who.chat.ReportMessage(
        pb.ReportMessageRequest(
            conversation_id=conversation_id,
            message_seq=seq,
            reason=types_pb2.REPORT_REASON_SPAM,
            details=details,
        ),
        metadata=who.md,
    )
    return response
