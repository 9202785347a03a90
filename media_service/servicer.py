"""The gRPC servicer of media_service: protos in and out, refusals through the shared wrappers."""

from __future__ import annotations

from chatmesh.chat.v1 import types_pb2
from chatmesh.media.v1 import media_service_pb2 as pb
from chatmesh.media.v1 import media_service_pb2_grpc

from chatmesh_common.auth import Identity, ServiceIdentity
from chatmesh_common.rpc import Authenticator, RpcServicer, check_id, invalid, timestamp, unary

from .media import Media
from .store.base import MediaRecord, State

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MediaService"].full_name

_STATES = {
    State.PENDING: pb.MEDIA_STATE_PENDING,
    State.READY: pb.MEDIA_STATE_READY,
    State.REJECTED: pb.MEDIA_STATE_REJECTED,
}


def attachment(record: MediaRecord) -> types_pb2.Attachment:
    """What messages carry of a media: metadata, never a URL or a blob key."""
    return types_pb2.Attachment(
        media_id=record.media_id,
        content_type=record.content_type,
        size_bytes=record.size_bytes,
        file_name=record.file_name,
        width=record.width,
        height=record.height,
        blurhash=record.blurhash,
        thumbnails=sorted(record.thumbnails),
    )


def media(record: MediaRecord) -> pb.Media:
    return pb.Media(
        media_id=record.media_id,
        conversation_id=record.conversation_id,
        uploader_id=record.uploader_id,
        state=_STATES[record.state],
        reject_reason=record.reject_reason,
        reject_detail=record.reject_detail,
        attachment=attachment(record),
        sha256=record.sha256,
        created_at=timestamp(record.created_at),
    )


class MediaServicer(RpcServicer, media_service_pb2_grpc.MediaServiceServicer):
    SERVICE = SERVICE_NAME

    def __init__(self, media: Media, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.media = media

    @unary
    async def CreateUpload(
        self, request: pb.CreateUploadRequest, who: Identity
    ) -> pb.CreateUploadResponse:
        check_id("conversation_id", request.conversation_id)
        upload = await self.media.create_upload(
            who.user_id,
            request.conversation_id,
            request.file_name,
            request.size_bytes,
            request.content_type,
        )
        presigned = upload.presigned
        return pb.CreateUploadResponse(
            media=media(upload.record),
            upload=pb.PresignedUpload(
                method=presigned.method,
                url=presigned.url,
                fields=dict(presigned.fields),
                headers=dict(presigned.headers),
                expires_at=timestamp(presigned.expires_at_ms / 1000),
                max_size_bytes=upload.max_size,
            ),
        )

    @unary
    async def CompleteUpload(
        self, request: pb.CompleteUploadRequest, who: Identity
    ) -> pb.CompleteUploadResponse:
        record = await self.media.complete_upload(who.user_id, request.media_id)
        return pb.CompleteUploadResponse(media=media(record))

    @unary
    async def GetMedia(self, request: pb.GetMediaRequest, who: Identity) -> pb.GetMediaResponse:
        return pb.GetMediaResponse(media=media(await self.media.get(who.user_id, request.media_id)))

    @unary
    async def GetDownloadUrl(
        self, request: pb.GetDownloadUrlRequest, who: Identity
    ) -> pb.GetDownloadUrlResponse:
        url, expires_at = await self.media.download_url(
            who.user_id, request.media_id, request.variant, request.message_seq
        )
        return pb.GetDownloadUrlResponse(url=url, expires_at=timestamp(expires_at))

    @unary
    async def ResolveAttachments(
        self, request: pb.ResolveAttachmentsRequest, _caller: ServiceIdentity
    ) -> pb.ResolveAttachmentsResponse:
        check_id("sender_id", request.sender_id)
        check_id("conversation_id", request.conversation_id)
        if len(set(request.media_ids)) != len(request.media_ids):
            raise invalid("attachments: a media id is attached twice")
        records = await self.media.resolve(
            request.sender_id, request.conversation_id, request.media_ids
        )
        return pb.ResolveAttachmentsResponse(attachments=[attachment(r) for r in records])
