"""What a push says: the preview privacy level applied to a message, and the silent read update.
Pure code: no I/O. Data carries ids only; alert text appears only at the FULL level."""

from __future__ import annotations

import hashlib

from .providers.base import PushMessage
from .store.base import Preview

NEW_MESSAGE = "New message"


def collapse_key(conversation_id: str) -> str:
    """One key per conversation (APNs allows 64 bytes): a burst shows as one notification."""
    if len(conversation_id) <= 60:
        return f"c:{conversation_id}"
    return "c:" + hashlib.sha256(conversation_id.encode()).hexdigest()[:40]


def message_push(
    preview: Preview,
    *,
    conversation_id: str,
    title: str,
    group: bool,
    seq: int,
    message_id: str,
    sender_id: str,
    body: str,
    badge: int,
) -> PushMessage:
    data = {"type": "message", "conversation_id": conversation_id, "seq": str(seq),
            "message_id": message_id, "count": "1"}  # fmt: skip
    text_title, text_body = "", ""
    if preview is Preview.FULL:
        data["sender_id"] = sender_id
        text_title = title if group and title else sender_id
        text = body or "Attachment"
        text_body = f"{sender_id}: {text}" if group else text
    elif preview is Preview.SENDER_ONLY:
        data["sender_id"] = sender_id
        text_title, text_body = sender_id, NEW_MESSAGE
    elif preview is Preview.GENERIC:
        text_body = NEW_MESSAGE
    return PushMessage(
        title=text_title,
        body=text_body,
        data=data,
        badge=badge,
        collapse_key=collapse_key(conversation_id),
    )


def clear_push(conversation_id: str, last_read_seq: int, badge: int) -> PushMessage:
    """The silent update after a read: clear the conversation's notifications, set the badge."""
    return PushMessage(
        data={
            "type": "clear",
            "conversation_id": conversation_id,
            "last_read_seq": str(last_read_seq),
        },
        badge=badge,
        collapse_key=collapse_key(conversation_id),
        silent=True,
        high_priority=False,
    )
