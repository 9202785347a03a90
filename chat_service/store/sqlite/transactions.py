"""The writes of the embedded store: each a function of the writer's connection.

The group-commit writer (`writer`) runs each of them inside its own savepoint of a shared
transaction; an exception undoes that one write only. Every write that takes a seq goes through
`take_seq`, which also records the seq in the outbox in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .. import extras
from ..base import (
    AppendResult,
    ConflictError,
    ConversationRecord,
    EventKind,
    EventRecord,
    Kind,
    MemberRecord,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    NotFoundError,
    NotMemberError,
    Role,
    SuspendedError,
    refuses_suspended,
)
from .moderation import get_suspension
from .queries import (
    MEMBER_COLUMNS,
    MESSAGE_COLUMNS,
    conversation_by_direct_key,
    get_conversation,
    get_member,
    get_message,
    message_record,
)

# Conversations


def create_conversation(
    conn: sqlite3.Connection, new: NewConversation
) -> tuple[ConversationRecord, bool]:
    if new.direct_key:
        existing = conversation_by_direct_key(conn, new.direct_key)
        if existing is not None:
            return existing, False
    _require_active(conn, new.created_by)
    conn.execute(
        "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at,"
        " last_seq, member_count, archived, updated_at, direct_key)"
        " VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?, ?)",
        (
            new.conversation_id,
            int(new.kind),
            new.title,
            new.created_by,
            new.created_at,
            len(new.members),
            new.created_at,
            new.direct_key or None,
        ),
    )
    conn.executemany(
        f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, 0, 0, 0)",
        [(new.conversation_id, u, int(r), new.created_at) for u, r in new.members],
    )
    return new.created(), True


def update_conversation(
    conn: sqlite3.Connection, conversation_id: str, title: str | None, archived: bool | None
) -> ConversationRecord:
    if title is not None:
        conn.execute(
            "UPDATE conversations SET title = ? WHERE conversation_id = ?",
            (title, conversation_id),
        )
    if archived is not None:
        conn.execute(
            "UPDATE conversations SET archived = ? WHERE conversation_id = ?",
            (int(archived), conversation_id),
        )
    record = get_conversation(conn, conversation_id)
    if record is None:
        raise NotFoundError(f"conversation {conversation_id} not found")
    return record


# Seqs and membership checks


def take_seq(
    conn: sqlite3.Connection, conversation_id: str, at: float, delta: int = 0
) -> tuple[int, int]:
    """The next seq and the member count after `delta`; records the seq in the outbox.

    The outbox row is written in the same transaction as the event, so the relay learns
    of every committed event even if this process dies before publishing it.
    """
    row = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?,"
        " member_count = member_count + ? WHERE conversation_id = ?"
        " RETURNING last_seq, member_count",
        (at, delta, conversation_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"conversation {conversation_id} not found")
    seq = int(row[0])
    conn.execute(
        "INSERT INTO outbox (conversation_id, from_seq, up_to_seq) VALUES (?, ?, ?)"
        " ON CONFLICT (conversation_id) DO UPDATE SET up_to_seq = excluded.up_to_seq",
        (conversation_id, seq, seq),
    )
    return seq, int(row[1])


def _require_member(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?",
        (conversation_id, user_id),
    ).fetchone()
    if row is None:
        raise NotMemberError(f"not a member of conversation {conversation_id}")


def _require_active(conn: sqlite3.Connection, user_id: str) -> None:
    """Checked inside the write's transaction: a suspension committed before it binds."""
    suspension = get_suspension(conn, user_id)
    if suspension is not None:
        raise SuspendedError(suspension.refusal())


def _member_in(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> MemberRecord:
    member = get_member(conn, conversation_id, user_id)
    if member is None:
        raise NotFoundError(f"{user_id} is not a member of {conversation_id}")
    return member


# Members


def change_members(
    conn: sqlite3.Connection,
    conversation_id: str,
    actor_id: str,
    changes: Sequence[MembershipChange],
    at: float,
) -> list[EventRecord]:
    if refuses_suspended(actor_id, changes):
        _require_active(conn, actor_id)
    events: list[EventRecord] = []
    for change in changes:
        present = conn.execute(
            "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?",
            (conversation_id, change.user_id),
        ).fetchone()
        role: Role | None
        if change.kind == EventKind.MEMBER_ADDED:
            if present is not None:
                continue
            role = change.role or Role.MEMBER
            conn.execute(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (conversation_id, change.user_id, int(role), at, 0, 0),
            )
            delta = 1
        elif change.kind in (EventKind.MEMBER_REMOVED, EventKind.MEMBER_LEFT):
            if present is None:
                continue
            role = None
            conn.execute(
                "DELETE FROM members WHERE conversation_id = ? AND user_id = ?",
                (conversation_id, change.user_id),
            )
            delta = -1
        elif change.kind == EventKind.MEMBER_ROLE_CHANGED:
            if present is None:
                raise NotFoundError(f"{change.user_id} is not a member")
            role = change.role or Role.MEMBER
            if present[0] == int(role):
                continue
            conn.execute(
                "UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?",
                (int(role), conversation_id, change.user_id),
            )
            delta = 0
        else:
            raise ValueError(f"not a membership change: {change.kind!r}")
        seq, member_count = take_seq(conn, conversation_id, at, delta)
        conn.execute(
            "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at,"
            " member_user_id, member_role) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                conversation_id,
                seq,
                int(change.kind),
                actor_id,
                at,
                change.user_id,
                int(role) if role else 0,
            ),
        )
        if delta > 0:
            # A new member has read nothing before joining: history before it is not unread.
            conn.execute(
                "UPDATE members SET last_read_seq = ?, last_delivered_seq = ?"
                " WHERE conversation_id = ? AND user_id = ?",
                (seq, seq, conversation_id, change.user_id),
            )
        events.append(
            EventRecord(
                conversation_id=conversation_id,
                seq=seq,
                kind=change.kind,
                actor_id=actor_id,
                occurred_at=at,
                member_user_id=change.user_id,
                member_role=role,
                member_count=member_count,
            )
        )
    return events


def set_muted(
    conn: sqlite3.Connection, conversation_id: str, user_id: str, muted: bool
) -> MemberRecord:
    conn.execute(
        "UPDATE members SET muted = ? WHERE conversation_id = ? AND user_id = ?",
        (int(muted), conversation_id, user_id),
    )
    return _member_in(conn, conversation_id, user_id)


# Messages


def append_message(conn: sqlite3.Connection, new: NewMessage) -> AppendResult:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages"
        " WHERE conversation_id = ? AND sender_id = ? AND client_msg_id = ?",
        (new.conversation_id, new.sender_id, new.client_msg_id),
    ).fetchone()
    if row is not None:
        return AppendResult(message_record(row), duplicate=True)
    _require_member(conn, new.conversation_id, new.sender_id)
    _require_active(conn, new.sender_id)
    seq, _count = take_seq(conn, new.conversation_id, new.created_at)
    conn.execute(
        f"INSERT INTO messages ({MESSAGE_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, 0, ?)",
        (
            new.conversation_id,
            seq,
            new.message_id,
            new.sender_id,
            new.created_at,
            new.kind,
            new.body,
            extras.encode(new.attachments, new.attachment_info, new.mentions),
            new.reply_to_seq,
            new.client_msg_id,
        ),
    )
    conn.execute(
        "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at,"
        " message_seq) VALUES (?, ?, ?, ?, ?, ?)",
        (
            new.conversation_id,
            seq,
            int(EventKind.MESSAGE_CREATED),
            new.sender_id,
            new.created_at,
            seq,
        ),
    )
    # The sender has read everything up to their own message.
    conn.execute(
        "UPDATE members SET last_read_seq = MAX(last_read_seq, ?),"
        " last_delivered_seq = MAX(last_delivered_seq, ?)"
        " WHERE conversation_id = ? AND user_id = ?",
        (seq, seq, new.conversation_id, new.sender_id),
    )
    message = MessageRecord(
        conversation_id=new.conversation_id,
        seq=seq,
        message_id=new.message_id,
        sender_id=new.sender_id,
        created_at=new.created_at,
        kind=new.kind,
        body=new.body,
        attachments=new.attachments,
        reply_to_seq=new.reply_to_seq,
        version=1,
        edited_at=None,
        deleted=False,
        client_msg_id=new.client_msg_id,
        attachment_info=new.attachment_info,
        mentions=new.mentions,
    )
    return AppendResult(message, duplicate=False)


def change_message(
    conn: sqlite3.Connection,
    conversation_id: str,
    seq: int,
    actor_id: str,
    at: float,
    kind: EventKind,
    body: str | None,
    *,
    moderated: bool = False,
) -> EventRecord:
    """An edit (kind MESSAGE_EDITED, with the new body) or a delete of message `seq`; by a
    member, or by a moderator (`moderated`) who need not be one."""
    if not moderated:
        _require_member(conn, conversation_id, actor_id)
        _require_active(conn, actor_id)
    current = get_message(conn, conversation_id, seq)
    if current is None:
        raise NotFoundError(f"message {seq} not found")
    if current.deleted:
        raise ConflictError(f"message {seq} is deleted")
    if kind == EventKind.MESSAGE_EDITED:
        conn.execute(
            "UPDATE messages SET body = ?, version = version + 1, edited_at = ?"
            " WHERE conversation_id = ? AND seq = ?",
            (body, at, conversation_id, seq),
        )
    else:
        conn.execute(
            "UPDATE messages SET body = '', attachments = '[]', deleted = 1"
            " WHERE conversation_id = ? AND seq = ?",
            (conversation_id, seq),
        )
    event_seq, _count = take_seq(conn, conversation_id, at)
    conn.execute(
        "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at, message_seq)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (conversation_id, event_seq, int(kind), actor_id, at, seq),
    )
    return EventRecord(
        conversation_id=conversation_id,
        seq=event_seq,
        kind=kind,
        actor_id=actor_id,
        occurred_at=at,
        message=get_message(conn, conversation_id, seq),
    )


# The outbox


def clear_outbox(conn: sqlite3.Connection, relayed: Sequence[tuple[str, int]]) -> None:
    for conversation_id, up_to_seq in relayed:
        conn.execute(
            "DELETE FROM outbox WHERE conversation_id = ? AND up_to_seq <= ?",
            (conversation_id, up_to_seq),
        )
        conn.execute(
            "UPDATE outbox SET from_seq = MAX(from_seq, ? + 1) WHERE conversation_id = ?",
            (up_to_seq, conversation_id),
        )


# Retention


def purge_expired(conn: sqlite3.Connection, kind: Kind, before: float, limit: int) -> int:
    """The conversations of `kind` whose log starts with an event older than `before`, oldest
    first; per conversation the expired run from first_seq, up to `limit` messages in all.
    Rows below the new horizon go in the same transaction that moves first_seq, so readers
    never see a half-purged log."""
    candidates = conn.execute(
        "SELECT conversation_id, first_seq, last_seq FROM ("
        " SELECT c.conversation_id, c.first_seq, c.last_seq,"
        "  (SELECT e.occurred_at FROM events e WHERE e.conversation_id = c.conversation_id"
        "   AND e.seq >= c.first_seq ORDER BY e.seq LIMIT 1) AS oldest"
        " FROM conversations c WHERE c.kind = ? AND c.first_seq <= c.last_seq)"
        " WHERE oldest < ? ORDER BY oldest",
        (int(kind), before),
    ).fetchall()
    removed = 0
    for conversation_id, first_seq, last_seq in candidates:
        if removed >= limit:
            break
        horizon = last_seq + 1
        cursor = conn.execute(
            "SELECT seq, kind, occurred_at FROM events"
            " WHERE conversation_id = ? AND seq >= ? ORDER BY seq",
            (conversation_id, first_seq),
        )
        for seq, event_kind, occurred_at in cursor:
            if occurred_at >= before:
                horizon = seq
                break
            if event_kind == EventKind.MESSAGE_CREATED:
                if removed >= limit:
                    horizon = seq
                    break
                removed += 1
        cursor.close()
        conn.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND seq < ?",
            (conversation_id, horizon),
        )
        conn.execute(
            "DELETE FROM events WHERE conversation_id = ? AND seq < ?",
            (conversation_id, horizon),
        )
        conn.execute(
            "UPDATE conversations SET first_seq = MAX(first_seq, ?) WHERE conversation_id = ?",
            (horizon, conversation_id),
        )
    return removed


# Receipts


def mark_read(
    conn: sqlite3.Connection, conversation_id: str, user_id: str, seq: int
) -> MemberRecord:
    conn.execute(
        "UPDATE members SET last_read_seq = MAX(last_read_seq, ?),"
        " last_delivered_seq = MAX(last_delivered_seq, ?)"
        " WHERE conversation_id = ? AND user_id = ?",
        (seq, seq, conversation_id, user_id),
    )
    return _member_in(conn, conversation_id, user_id)


def mark_delivered(
    conn: sqlite3.Connection, conversation_id: str, user_id: str, seq: int
) -> MemberRecord:
    conn.execute(
        "UPDATE members SET last_delivered_seq = MAX(last_delivered_seq, ?)"
        " WHERE conversation_id = ? AND user_id = ?",
        (seq, conversation_id, user_id),
    )
    return _member_in(conn, conversation_id, user_id)


# Blocks


def set_block(
    conn: sqlite3.Connection, user_id: str, blocked_user_id: str, blocked: bool, at: float
) -> None:
    if blocked:
        conn.execute(
            "INSERT OR IGNORE INTO blocks (user_id, blocked_user_id, created_at) VALUES (?, ?, ?)",
            (user_id, blocked_user_id, at),
        )
    else:
        conn.execute(
            "DELETE FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
            (user_id, blocked_user_id),
        )
