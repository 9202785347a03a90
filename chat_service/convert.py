"""Store records to protobuf messages."""

from __future__ import annotations

from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2

from chatmesh_common.rpc import timestamp as timestamp

from .store.base import (
    AttachmentInfo,
    ConversationRecord,
    EventKind,
    EventRecord,
    MemberRecord,
    MessageRecord,
    ReportRecord,
)

_MEMBERSHIP_CHANGES = {
    EventKind.MEMBER_ADDED: events_pb2.MEMBERSHIP_CHANGE_ADDED,
    EventKind.MEMBER_REMOVED: events_pb2.MEMBERSHIP_CHANGE_REMOVED,
    EventKind.MEMBER_LEFT: events_pb2.MEMBERSHIP_CHANGE_LEFT,
    EventKind.MEMBER_ROLE_CHANGED: events_pb2.MEMBERSHIP_CHANGE_ROLE_CHANGED,
}


def message(record: MessageRecord) -> types_pb2.Message:
    out = types_pb2.Message(
        conversation_id=record.conversation_id,
        seq=record.seq,
        message_id=record.message_id,
        sender_id=record.sender_id,
        created_at=timestamp(record.created_at),
        kind=record.kind,  # type: ignore[arg-type]
        body=record.body,
        attachments=record.attachments,
        reply_to_seq=record.reply_to_seq,
        version=record.version,
        deleted=record.deleted,
        client_msg_id=record.client_msg_id,
        attachment_info=[attachment(a) for a in record.attachment_info],
        mentions=record.mentions,
    )
    if record.edited_at is not None:
        out.edited_at.CopyFrom(timestamp(record.edited_at))
    return out


def attachment(info: AttachmentInfo) -> types_pb2.Attachment:
    return types_pb2.Attachment(
        media_id=info.media_id,
        content_type=info.content_type,
        size_bytes=info.size_bytes,
        file_name=info.file_name,
        width=info.width,
        height=info.height,
        blurhash=info.blurhash,
        thumbnails=info.thumbnails,
    )


def attachment_info(proto: types_pb2.Attachment) -> AttachmentInfo:
    return AttachmentInfo(
        media_id=proto.media_id,
        content_type=proto.content_type,
        size_bytes=proto.size_bytes,
        file_name=proto.file_name,
        width=proto.width,
        height=proto.height,
        blurhash=proto.blurhash,
        thumbnails=tuple(proto.thumbnails),
    )


def member(record: MemberRecord) -> types_pb2.Member:
    return types_pb2.Member(
        user_id=record.user_id,
        role=int(record.role),  # type: ignore[arg-type]
        joined_at=timestamp(record.joined_at),
    )


def conversation(record: ConversationRecord) -> types_pb2.Conversation:
    return types_pb2.Conversation(
        conversation_id=record.conversation_id,
        kind=int(record.kind),  # type: ignore[arg-type]
        title=record.title,
        created_by=record.created_by,
        created_at=timestamp(record.created_at),
        last_seq=record.last_seq,
        member_count=record.member_count,
        archived=record.archived,
    )


def event(record: EventRecord) -> events_pb2.ConversationEvent:
    out = events_pb2.ConversationEvent(
        conversation_id=record.conversation_id,
        seq=record.seq,
        occurred_at=timestamp(record.occurred_at),
        actor_id=record.actor_id,
    )
    if record.kind == EventKind.MESSAGE_CREATED and record.message is not None:
        out.message_created.message.CopyFrom(message(record.message))
    elif record.kind == EventKind.MESSAGE_EDITED and record.message is not None:
        out.message_edited.message.CopyFrom(message(record.message))
    elif record.kind == EventKind.MESSAGE_DELETED and record.message is not None:
        out.message_deleted.message.CopyFrom(message(record.message))
    elif record.kind in _MEMBERSHIP_CHANGES:
        change = out.membership_changed
        change.change = _MEMBERSHIP_CHANGES[record.kind]
        change.user_id = record.member_user_id
        change.role = int(record.member_role) if record.member_role else 0  # type: ignore[assignment]
        change.member_count = record.member_count
    return out


def report(record: ReportRecord) -> types_pb2.Report:
    out = types_pb2.Report(
        report_id=record.report_id,
        reporter_id=record.reporter_id,
        reason=record.reason,  # type: ignore[arg-type]
        details=record.details,
        conversation_id=record.conversation_id,
        message_seq=record.message_seq,
        message_id=record.message_id,
        user_id=record.user_id,
        created_at=timestamp(record.created_at),
        status=int(record.status),  # type: ignore[arg-type]
        resolved_by=record.resolved_by,
        resolution=record.resolution,
    )
    if record.resolved_at is not None:
        out.resolved_at.CopyFrom(timestamp(record.resolved_at))
    return out
