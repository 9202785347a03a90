"""What chat_service asks media_service before it stores a message with attachments: that each
media id is READY, was uploaded by the sender, belongs to this conversation, and what its
metadata is (messages carry metadata, never URLs).

Without media_service (CHATMESH_MEDIA_TARGET empty) no message can carry attachments: a media id
chat_service cannot check is refused rather than stored unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from chatmesh.media.v1 import media_service_pb2 as pb
from chatmesh.media.v1 import media_service_pb2_grpc

from chatmesh_common.auth import ServiceCredential
from chatmesh_common.credentials import SCOPE_MEDIA_ATTACH
from chatmesh_common.rpc import RpcError, precondition

from . import convert
from .store.base import AttachmentInfo

log = logging.getLogger(__name__)

SERVICE_NAME = "chat"
# media_service's refusals that concern the request, passed on to the sender as they are.
_PASSED_ON = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def chat_credential(service_secret: str) -> ServiceCredential:
    return ServiceCredential(service_secret, SERVICE_NAME, (SCOPE_MEDIA_ATTACH,))


class Attachments(Protocol):
    async def resolve(
        self, sender_id: str, conversation_id: str, media_ids: Sequence[str]
    ) -> list[AttachmentInfo]:
        """The metadata of each media id, in order; RpcError naming a refused one."""


class NoMedia:
    """chat_service without media_service: attachments are refused."""

    async def resolve(
        self, sender_id: str, conversation_id: str, media_ids: Sequence[str]
    ) -> list[AttachmentInfo]:
        if media_ids:
            raise precondition(
                "attachments need media_service, which this chat_service is not connected to"
            )
        return []


class GrpcAttachments:
    """MediaService.ResolveAttachments with chat_service's service credential; the channel may
    be given later (`chatmesh dev`)."""

    def __init__(
        self,
        credential: ServiceCredential,
        channel: grpc.aio.Channel | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._credential = credential
        self._timeout_s = timeout_s
        self._stub: Any = None
        if channel is not None:
            self.set_channel(channel)

    def set_channel(self, channel: grpc.aio.Channel) -> None:
        self._stub = media_service_pb2_grpc.MediaServiceStub(channel)

    async def resolve(
        self, sender_id: str, conversation_id: str, media_ids: Sequence[str]
    ) -> list[AttachmentInfo]:
        if not media_ids:
            return []
        if self._stub is None:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "media_service not connected yet")
        try:
            response = await self._stub.ResolveAttachments(
                pb.ResolveAttachmentsRequest(
                    sender_id=sender_id, conversation_id=conversation_id, media_ids=media_ids
                ),
                metadata=self._credential.metadata(),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code not in _PASSED_ON:
                log.warning("media_service could not check attachments: %s", exc.details())
                raise RpcError(
                    grpc.StatusCode.UNAVAILABLE, f"attachments: {exc.details()}", 1.0
                ) from exc
            raise RpcError(code, exc.details() or "attachments refused") from exc
        return [convert.attachment_info(a) for a in response.attachments]
