"""The CQL statements of the cluster store, and how their rows read back as records.

Every statement is prepared once per session by its name here (`session.CqlSession`), with the
keyspace filled into each table name. Statements without a condition (`IF ...`) may run twice
with the same outcome (reads, and writes of fixed values or with explicit timestamps); they are
the only ones the retry policy retries. See docs/storage.md for the data model.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import extras
from ..base import ConversationRecord, Kind, MemberRecord, MessageRecord, Role
from .held_cql import HELD_STATEMENTS
from .moderation_cql import MODERATION_STATEMENTS
from .schema import BUCKET_SIZE, OUTBOX_SHARDS

MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender_id, created_at, kind, body, attachments,"
    " reply_to_seq, version, edited_at, deleted, client_msg_id"
)
CONVERSATION_COLUMNS = (
    "conversation_id, kind, title, created_by, created_at, last_seq, member_count, archived,"
    " updated_at, direct_key, initial_members, pending, first_seq, fences"
)

STATEMENTS: Final[Mapping[str, str]] = {
    "head": f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = ? LIMIT 1",
    "create": "INSERT INTO conversations (conversation_id, kind, title, created_by,"
    " created_at, last_seq, member_count, archived, updated_at, direct_key,"
    " initial_members) VALUES (?, ?, ?, ?, ?, 0, ?, false, ?, ?, ?) IF NOT EXISTS",
    "drop_conversation": "DELETE kind, title, created_by, created_at, last_seq,"
    " member_count, archived, updated_at, direct_key, initial_members, pending"
    " FROM conversations WHERE conversation_id = ? IF EXISTS",
    "set_title": "UPDATE conversations SET title = ? WHERE conversation_id = ? IF EXISTS",
    "set_archived": "UPDATE conversations SET archived = ? WHERE conversation_id = ? IF EXISTS",
    "advance": "UPDATE conversations SET last_seq = ?, member_count = ?, updated_at = ?,"
    " pending = ? WHERE conversation_id = ? IF last_seq = ?",
    # Suspension fences (see schema migration 5). The check rides in a round's conditional
    # batch: it sets updated_at to the value the round's `advance` sets it to.
    "fence_check": "UPDATE conversations SET updated_at = ? WHERE conversation_id = ?"
    " IF fences[?] = null",
    "set_fence": "UPDATE conversations SET fences[?] = ? WHERE conversation_id = ? IF EXISTS",
    "drop_fence": "DELETE fences[?] FROM conversations WHERE conversation_id = ? IF fences[?] = ?",
    "claim_key": "INSERT INTO conversations (conversation_id, sender_id, client_msg_id,"
    " msg_seq) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
    "get_key": "SELECT msg_seq FROM conversations WHERE conversation_id = ?"
    " AND sender_id = ? AND client_msg_id = ?",
    "get_direct": "SELECT conversation_id FROM direct_conversations WHERE direct_key = ?",
    "claim_direct": "INSERT INTO direct_conversations (direct_key, conversation_id)"
    " VALUES (?, ?) IF NOT EXISTS",
    "member": "SELECT conversation_id, user_id, role, joined_at, last_read_seq,"
    " last_delivered_seq FROM members WHERE conversation_id = ? AND user_id = ?",
    "members_page": "SELECT conversation_id, user_id, role, joined_at, last_read_seq,"
    " last_delivered_seq FROM members WHERE conversation_id = ? AND user_id > ?"
    " LIMIT ?",
    "member_roles": "SELECT user_id, role FROM members WHERE conversation_id = ?",
    "insert_member": "INSERT INTO members (conversation_id, user_id, role, joined_at,"
    " last_read_seq, last_delivered_seq) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "insert_initial_member": "INSERT INTO members (conversation_id, user_id, role,"
    " joined_at) VALUES (?, ?, ?, ?) USING TIMESTAMP 0",
    "delete_member": "DELETE FROM members USING TIMESTAMP ?"
    " WHERE conversation_id = ? AND user_id = ?",
    "set_role": "UPDATE members USING TIMESTAMP ? SET role = ?"
    " WHERE conversation_id = ? AND user_id = ?",
    "mark_read": "UPDATE members USING TIMESTAMP ? SET last_read_seq = ?,"
    " last_delivered_seq = ? WHERE conversation_id = ? AND user_id = ?",
    "mark_delivered": "UPDATE members USING TIMESTAMP ? SET last_delivered_seq = ?"
    " WHERE conversation_id = ? AND user_id = ?",
    "pref": "SELECT muted FROM member_prefs WHERE conversation_id = ? AND user_id = ?",
    "prefs_range": "SELECT user_id, muted FROM member_prefs WHERE conversation_id = ?"
    " AND user_id >= ? AND user_id <= ?",
    "set_muted": "UPDATE member_prefs SET muted = ? WHERE conversation_id = ? AND user_id = ?",
    "delete_prefs": "DELETE FROM member_prefs WHERE conversation_id = ? AND user_id = ?",
    "add_user_conversation": "INSERT INTO user_conversations (user_id, conversation_id)"
    " VALUES (?, ?) USING TIMESTAMP ?",
    "add_initial_user_conversation": "INSERT INTO user_conversations (user_id,"
    " conversation_id) VALUES (?, ?) USING TIMESTAMP 0",
    "delete_user_conversation": "DELETE FROM user_conversations USING TIMESTAMP ?"
    " WHERE user_id = ? AND conversation_id = ?",
    "user_conversations": "SELECT conversation_id FROM user_conversations WHERE user_id = ?",
    "insert_message": f"INSERT INTO messages ({MESSAGE_COLUMNS}, bucket) VALUES"
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, null, false, ?, ?) USING TIMESTAMP ?",
    "insert_message_id": "INSERT INTO messages_by_id (message_id, conversation_id, seq)"
    " VALUES (?, ?, ?)",
    "message_by_id": "SELECT conversation_id, seq FROM messages_by_id WHERE message_id = ?",
    "edit_message": "UPDATE messages USING TIMESTAMP ? SET body = ?, version = ?,"
    " edited_at = ? WHERE conversation_id = ? AND bucket = ? AND seq = ?",
    "tombstone_message": "UPDATE messages USING TIMESTAMP ? SET body = '',"
    " attachments = '[]', deleted = true"
    " WHERE conversation_id = ? AND bucket = ? AND seq = ?",
    "message": f"SELECT {MESSAGE_COLUMNS} FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq = ?",
    "messages_in": f"SELECT {MESSAGE_COLUMNS} FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq IN ?",
    "history_desc": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
    " AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
    "history_asc": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
    " AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    "unread_scan": "SELECT seq, sender_id, deleted FROM messages"
    " WHERE conversation_id = ? AND bucket = ? AND seq > ?",
    "insert_event": "INSERT INTO events (conversation_id, bucket, seq, kind, actor_id,"
    " occurred_at, message_seq, member_user_id, member_role)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "event_exists": "SELECT seq FROM events WHERE conversation_id = ? AND bucket = ? AND seq = ?",
    "events_range": "SELECT seq, kind, actor_id, occurred_at, message_seq,"
    " member_user_id, member_role FROM events WHERE conversation_id = ?"
    " AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?",
    "set_block": "INSERT INTO blocks (user_id, blocked_user_id, created_at) VALUES (?, ?, ?)",
    "unset_block": "DELETE FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
    "is_blocked": "SELECT blocked_user_id FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
    "list_blocked": "SELECT blocked_user_id FROM blocks WHERE user_id = ?",
    "outbox_add": "INSERT INTO outbox_index (shard, conversation_id) VALUES (?, ?)"
    " USING TIMESTAMP ?",
    "outbox_drop": "DELETE FROM outbox_index USING TIMESTAMP ?"
    " WHERE shard = ? AND conversation_id = ?",
    "outbox_scan": "SELECT conversation_id FROM outbox_index WHERE shard = ? LIMIT ?",
    "relayed": "SELECT relayed_seq FROM outbox_relayed WHERE conversation_id = ?",
    "set_relayed": "UPDATE outbox_relayed USING TIMESTAMP ? SET relayed_seq = ?"
    " WHERE conversation_id = ?",
    # Retention (see purge_expired)
    "scan_heads_first": "SELECT DISTINCT conversation_id, kind, created_at, first_seq,"
    " last_seq FROM conversations LIMIT ?",
    "scan_heads_after": "SELECT DISTINCT conversation_id, kind, created_at, first_seq,"
    " last_seq FROM conversations WHERE token(conversation_id) > token(?) LIMIT ?",
    "purge_messages_bucket": "DELETE FROM messages USING TIMESTAMP ?"
    " WHERE conversation_id = ? AND bucket = ?",
    "purge_events_bucket": "DELETE FROM events USING TIMESTAMP ?"
    " WHERE conversation_id = ? AND bucket = ?",
    "purge_messages_below": "DELETE FROM messages USING TIMESTAMP ?"
    " WHERE conversation_id = ? AND bucket = ? AND seq < ?",
    "purge_events_below": "DELETE FROM events USING TIMESTAMP ?"
    " WHERE conversation_id = ? AND bucket = ? AND seq < ?",
    "set_first_seq": "UPDATE conversations USING TIMESTAMP ? SET first_seq = ?"
    " WHERE conversation_id = ?",
    "events_scan": "SELECT seq, kind, occurred_at FROM events WHERE conversation_id = ?"
    " AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?",
    # Reports, bans and suspensions (moderation_cql)
    **MODERATION_STATEMENTS,
    # Messages held for review (held)
    **HELD_STATEMENTS,
}

_TABLE = re.compile(r"\b(FROM|INTO|UPDATE)\s+(\w+)")


def qualified(cql: str, keyspace: str) -> str:
    """The statement with fully qualified table names: no `USE`, so it is unambiguous."""
    return _TABLE.sub(rf"\1 {keyspace}.\2", cql)


def idempotent(name: str) -> bool:
    """Everything but the lightweight transactions may run twice with the same outcome."""
    return " IF " not in STATEMENTS[name]


def outbox_shard(conversation_id: str) -> int:
    return zlib.crc32(conversation_id.encode()) % OUTBOX_SHARDS


def bucket_of(seq: int) -> int:
    return seq // BUCKET_SIZE


def message_from_row(row: Any) -> MessageRecord:
    attachments, info, mentions = extras.decode(row.attachments)
    return MessageRecord(
        conversation_id=row.conversation_id,
        seq=row.seq,
        message_id=row.message_id or "",
        sender_id=row.sender_id or "",
        created_at=row.created_at or 0.0,
        kind=row.kind or 0,
        body=row.body or "",
        attachments=attachments,
        reply_to_seq=row.reply_to_seq or 0,
        version=row.version or 1,
        edited_at=row.edited_at,
        deleted=bool(row.deleted),
        client_msg_id=row.client_msg_id or "",
        attachment_info=info,
        mentions=mentions,
    )


def message_from_json(conversation_id: str, m: Mapping[str, Any]) -> MessageRecord:
    attachments, info, mentions = extras.decode(m["attachments"])
    return MessageRecord(
        conversation_id=conversation_id,
        seq=m["seq"],
        message_id=m["message_id"],
        sender_id=m["sender_id"],
        created_at=m["created_at"],
        kind=m["kind"],
        body=m["body"],
        attachments=attachments,
        reply_to_seq=m["reply_to_seq"],
        version=1,
        edited_at=None,
        deleted=False,
        client_msg_id=m["client_msg_id"],
        attachment_info=info,
        mentions=mentions,
    )


@dataclass(slots=True)
class Head:
    conversation: ConversationRecord
    pending: list[dict[str, Any]]
    # Suspended writers fenced out of this conversation: user id -> suspended_at.
    fences: dict[str, float] = field(default_factory=dict)


def head_from_row(row: Any) -> Head | None:
    if row is None or row.kind is None:
        return None
    record = ConversationRecord(
        conversation_id=row.conversation_id,
        kind=Kind(row.kind),
        title=row.title or "",
        created_by=row.created_by or "",
        created_at=row.created_at or 0.0,
        last_seq=row.last_seq or 0,
        member_count=row.member_count or 0,
        archived=bool(row.archived),
        updated_at=row.updated_at or 0.0,
        first_seq=row.first_seq or 1,
    )
    pending = json.loads(row.pending) if row.pending else {}
    return Head(
        record,
        pending.get("events", []) if isinstance(pending, dict) else [],
        dict(row.fences or {}),
    )


def member_from_row(row: Any, muted: bool) -> MemberRecord:
    return MemberRecord(
        conversation_id=row.conversation_id,
        user_id=row.user_id,
        role=Role(row.role),
        joined_at=row.joined_at or 0.0,
        last_read_seq=row.last_read_seq or 0,
        last_delivered_seq=row.last_delivered_seq or 0,
        muted=muted,
    )
