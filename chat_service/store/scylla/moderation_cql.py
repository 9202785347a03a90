"""The CQL statements of the cluster store's moderation tables (merged into `statements`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# The report_queue partition that lists every report, whatever its status.
ALL_REPORTS = 0

REPORT_COLUMNS = (
    "report_id, reporter_id, reason, details, conversation_id, message_seq, message_id,"
    " user_id, created_at, status, resolved_by, resolved_at, resolution"
)

MODERATION_STATEMENTS: Final[Mapping[str, str]] = {
    "insert_report": f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES"
    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', null, '')",
    "drop_report": "DELETE FROM reports WHERE report_id = ?",
    "report": f"SELECT {REPORT_COLUMNS} FROM reports WHERE report_id = ?",
    "claim_report_key": "INSERT INTO report_keys (reporter_id, target_key, report_id)"
    " VALUES (?, ?, ?) IF NOT EXISTS",
    "queue_add": "INSERT INTO report_queue (status, report_id) VALUES (?, ?)",
    "queue_drop": "DELETE FROM report_queue WHERE status = ? AND report_id = ?",
    "queue_page": "SELECT report_id FROM report_queue WHERE status = ? AND report_id > ? LIMIT ?",
    "resolve_report": "UPDATE reports SET status = ?, resolved_by = ?, resolved_at = ?,"
    " resolution = ? WHERE report_id = ? IF status = ?",
    "set_ban": "INSERT INTO bans (conversation_id, user_id, banned_by, banned_at, reason)"
    " VALUES (?, ?, ?, ?, ?)",
    "remove_ban": "DELETE FROM bans WHERE conversation_id = ? AND user_id = ?",
    "ban": "SELECT conversation_id, user_id, banned_by, banned_at, reason FROM bans"
    " WHERE conversation_id = ? AND user_id = ?",
    "set_suspension": "INSERT INTO suspensions (user_id, suspended_by, suspended_at, reason)"
    " VALUES (?, ?, ?, ?)",
    "remove_suspension": "DELETE FROM suspensions WHERE user_id = ?",
    "suspension": "SELECT user_id, suspended_by, suspended_at, reason FROM suspensions"
    " WHERE user_id = ?",
}
