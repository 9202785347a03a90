"""The reads of the embedded store, and how its rows become records.

Each query is a function of a connection. The store runs them on its reader connection on the
event loop's thread (WAL readers never wait for the writer); the write transactions
(`transactions`) use the same row decoders and column lists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .. import extras
from ..base import (
    ConversationRecord,
    EventKind,
    EventRecord,
    HistoryDirection,
    Kind,
    MemberRecord,
    MessageRecord,
    OutboxEntry,
    Role,
)

MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender_id, created_at, kind, body, attachments,"
    " reply_to_seq, version, edited_at, deleted, client_msg_id"
)
MEMBER_COLUMNS = (
    "conversation_id, user_id, role, joined_at, last_read_seq, last_delivered_seq, muted"
)
CONVERSATION_COLUMNS = (
    "conversation_id, kind, title, created_by, created_at, last_seq, member_count, archived,"
    " updated_at, first_seq"
)


def message_record(row: Sequence[Any]) -> MessageRecord:
    attachments, info, mentions = extras.decode(row[7])
    return MessageRecord(
        conversation_id=row[0],
        seq=row[1],
        message_id=row[2],
        sender_id=row[3],
        created_at=row[4],
        kind=row[5],
        body=row[6],
        attachments=attachments,
        reply_to_seq=row[8],
        version=row[9],
        edited_at=row[10],
        deleted=bool(row[11]),
        client_msg_id=row[12],
        attachment_info=info,
        mentions=mentions,
    )


def member_record(row: Sequence[Any]) -> MemberRecord:
    return MemberRecord(
        conversation_id=row[0],
        user_id=row[1],
        role=Role(row[2]),
        joined_at=row[3],
        last_read_seq=row[4],
        last_delivered_seq=row[5],
        muted=bool(row[6]),
    )


def conversation_record(row: Sequence[Any]) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row[0],
        kind=Kind(row[1]),
        title=row[2],
        created_by=row[3],
        created_at=row[4],
        last_seq=row[5],
        member_count=row[6],
        archived=bool(row[7]),
        updated_at=row[8],
        first_seq=row[9],
    )


# Conversations


def get_conversation(conn: sqlite3.Connection, conversation_id: str) -> ConversationRecord | None:
    row = conn.execute(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = ?",
        (conversation_id,),
    ).fetchone()
    return conversation_record(row) if row else None


def conversation_by_direct_key(
    conn: sqlite3.Connection, direct_key: str
) -> ConversationRecord | None:
    row = conn.execute(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE direct_key = ?", (direct_key,)
    ).fetchone()
    return conversation_record(row) if row else None


# Members


def get_member(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> MemberRecord | None:
    row = conn.execute(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE conversation_id = ? AND user_id = ?",
        (conversation_id, user_id),
    ).fetchone()
    return member_record(row) if row else None


def list_members(
    conn: sqlite3.Connection, conversation_id: str, after_user_id: str, limit: int
) -> list[MemberRecord]:
    rows = conn.execute(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE conversation_id = ? AND user_id > ?"
        " ORDER BY user_id LIMIT ?",
        (conversation_id, after_user_id, limit),
    ).fetchall()
    return [member_record(r) for r in rows]


def member_ids(conn: sqlite3.Connection, conversation_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id FROM members WHERE conversation_id = ?", (conversation_id,)
    ).fetchall()
    return [r[0] for r in rows]


def user_conversations(conn: sqlite3.Connection, user_id: str) -> list[MemberRecord]:
    rows = conn.execute(
        f"SELECT {MEMBER_COLUMNS} FROM members WHERE user_id = ?", (user_id,)
    ).fetchall()
    return [member_record(r) for r in rows]


# Messages and the log


def get_message(conn: sqlite3.Connection, conversation_id: str, seq: int) -> MessageRecord | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq = ?",
        (conversation_id, seq),
    ).fetchone()
    return message_record(row) if row else None


def get_message_by_id(
    conn: sqlite3.Connection, conversation_id: str, message_id: str
) -> MessageRecord | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ? AND conversation_id = ?",
        (message_id, conversation_id),
    ).fetchone()
    return message_record(row) if row else None


def history(
    conn: sqlite3.Connection,
    conversation_id: str,
    before_seq: int,
    after_seq: int,
    limit: int,
    direction: HistoryDirection,
) -> list[MessageRecord]:
    upper = before_seq if before_seq > 0 else (1 << 62)
    order = "ASC" if direction == HistoryDirection.FORWARD else "DESC"
    rows = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
        f" AND seq > ? AND seq < ? ORDER BY seq {order} LIMIT ?",
        (conversation_id, after_seq, upper, limit),
    ).fetchall()
    return [message_record(r) for r in rows]


def events_after(
    conn: sqlite3.Connection, conversation_id: str, after_seq: int, limit: int
) -> list[EventRecord]:
    columns = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
    rows = conn.execute(
        "SELECT e.seq, e.kind, e.actor_id, e.occurred_at, e.member_user_id, e.member_role,"
        f" e.message_seq, {columns} FROM events e LEFT JOIN messages m"
        " ON m.conversation_id = e.conversation_id AND m.seq = e.message_seq"
        " WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
        (conversation_id, after_seq, limit),
    ).fetchall()
    return [
        EventRecord(
            conversation_id=conversation_id,
            seq=row[0],
            kind=EventKind(row[1]),
            actor_id=row[2],
            occurred_at=row[3],
            member_user_id=row[4],
            member_role=Role(row[5]) if row[5] else None,
            # An edit or delete of a message purged by retention: no message.
            message=message_record(row[7:]) if row[6] and row[7] is not None else None,
        )
        for row in rows
    ]


def count_unread(
    conn: sqlite3.Connection, conversation_id: str, user_id: str, after_seq: int
) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND seq > ?"
        " AND sender_id <> ? AND deleted = 0",
        (conversation_id, after_seq, user_id),
    ).fetchone()
    return int(row[0])


# The outbox


def pending_outbox(conn: sqlite3.Connection, limit: int) -> list[OutboxEntry]:
    rows = conn.execute(
        "SELECT conversation_id, from_seq, up_to_seq FROM outbox LIMIT ?", (limit,)
    ).fetchall()
    return [OutboxEntry(r[0], r[1], r[2]) for r in rows]


def outbox_entry(conn: sqlite3.Connection, conversation_id: str) -> OutboxEntry | None:
    row = conn.execute(
        "SELECT conversation_id, from_seq, up_to_seq FROM outbox WHERE conversation_id = ?",
        (conversation_id,),
    ).fetchone()
    return OutboxEntry(row[0], row[1], row[2]) if row else None


# Blocks


def is_blocked(conn: sqlite3.Connection, user_id: str, blocked_user_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
        (user_id, blocked_user_id),
    ).fetchone()
    return row is not None


def list_blocked(conn: sqlite3.Connection, user_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT blocked_user_id FROM blocks WHERE user_id = ? ORDER BY blocked_user_id",
        (user_id,),
    ).fetchall()
    return [r[0] for r in rows]
