"""The embedded store's messages held for review by the channel screen: one row per held message
(unique per sender, conversation and client_msg_id), its state moved once from PENDING."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .. import extras
from ..base import HeldRecord, HeldState, NewMessage, NotFoundError

HELD_COLUMNS = (
    "message_id, conversation_id, sender_id, client_msg_id, created_at, kind, body,"
    " attachments, reply_to_seq, reason, held_at, state, decided_by"
)


def held_record(row: Sequence[Any]) -> HeldRecord:
    attachments, info, mentions = extras.decode(row[7])
    return HeldRecord(
        message=NewMessage(
            conversation_id=row[1],
            sender_id=row[2],
            client_msg_id=row[3],
            message_id=row[0],
            created_at=row[4],
            kind=row[5],
            body=row[6],
            attachments=attachments,
            reply_to_seq=row[8],
            attachment_info=info,
            mentions=mentions,
        ),
        reason=row[9],
        held_at=row[10],
        state=HeldState(row[11]),
        decided_by=row[12],
    )


def hold_message(
    conn: sqlite3.Connection, new: NewMessage, reason: str, at: float
) -> tuple[HeldRecord, bool]:
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO held_messages ({HELD_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
        (
            new.message_id,
            new.conversation_id,
            new.sender_id,
            new.client_msg_id,
            new.created_at,
            new.kind,
            new.body,
            extras.encode(new.attachments, new.attachment_info, new.mentions),
            new.reply_to_seq,
            reason,
            at,
            int(HeldState.PENDING),
        ),
    )
    row = conn.execute(
        f"SELECT {HELD_COLUMNS} FROM held_messages"
        " WHERE conversation_id = ? AND sender_id = ? AND client_msg_id = ?",
        (new.conversation_id, new.sender_id, new.client_msg_id),
    ).fetchone()
    return held_record(row), cursor.rowcount == 1


def get_held(conn: sqlite3.Connection, message_id: str) -> HeldRecord | None:
    row = conn.execute(
        f"SELECT {HELD_COLUMNS} FROM held_messages WHERE message_id = ?", (message_id,)
    ).fetchone()
    return held_record(row) if row is not None else None


def list_held(conn: sqlite3.Connection, after_message_id: str, limit: int) -> list[HeldRecord]:
    rows = conn.execute(
        f"SELECT {HELD_COLUMNS} FROM held_messages WHERE state = ? AND message_id > ?"
        " ORDER BY message_id LIMIT ?",
        (int(HeldState.PENDING), after_message_id, limit),
    )
    return [held_record(r) for r in rows]


def decide_held(conn: sqlite3.Connection, message_id: str, state: HeldState, by: str) -> HeldRecord:
    # Only a pending one changes: the first decision stays.
    conn.execute(
        "UPDATE held_messages SET state = ?, decided_by = ? WHERE message_id = ? AND state = ?",
        (int(state), by, message_id, int(HeldState.PENDING)),
    )
    record = get_held(conn, message_id)
    if record is None:
        raise NotFoundError(f"held message {message_id} not found")
    return record
