"""The CQL statements of the cluster store's held messages (merged into `statements`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# The one partition of the pending queue (held messages wait for a person: few at a time).
QUEUE = 0

HELD_COLUMNS = (
    "message_id, conversation_id, sender_id, client_msg_id, created_at, kind, body,"
    " attachments, reply_to_seq, reason, held_at, state, decided_by"
)

HELD_STATEMENTS: Final[Mapping[str, str]] = {
    "insert_held": f"INSERT INTO held_messages ({HELD_COLUMNS}) VALUES"
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
    "drop_held_row": "DELETE FROM held_messages WHERE message_id = ?",
    "held": f"SELECT {HELD_COLUMNS} FROM held_messages WHERE message_id = ?",
    "claim_held_key": "INSERT INTO held_keys (conversation_id, sender_id, client_msg_id,"
    " message_id) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    "held_queue_add": "INSERT INTO held_queue (part, message_id) VALUES (?, ?)",
    "held_queue_drop": "DELETE FROM held_queue WHERE part = ? AND message_id = ?",
    "held_queue_page": "SELECT message_id FROM held_queue WHERE part = ? AND message_id > ?"
    " LIMIT ?",
    "decide_held": "UPDATE held_messages SET state = ?, decided_by = ? WHERE message_id = ?"
    " IF state = ?",
}
