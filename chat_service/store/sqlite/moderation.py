"""The moderation tables of the embedded store: reports, bans and suspensions.

Writes are jobs for the store's writer (a connection inside its transaction); reads run on the
reader connection. None of them takes a seq: the actions a moderator takes (deletes, removals)
are log events written by the usual transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..base import (
    BanRecord,
    NewReport,
    NotFoundError,
    ReportRecord,
    ReportStatus,
    SuspensionRecord,
)

REPORT_COLUMNS = (
    "report_id, reporter_id, reason, details, conversation_id, message_seq, message_id,"
    " user_id, created_at, status, resolved_by, resolved_at, resolution"
)


def report_record(row: Sequence[Any]) -> ReportRecord:
    return ReportRecord(
        report_id=row[0],
        reporter_id=row[1],
        reason=row[2],
        details=row[3],
        conversation_id=row[4],
        message_seq=row[5],
        message_id=row[6],
        user_id=row[7],
        created_at=row[8],
        status=ReportStatus(row[9]),
        resolved_by=row[10],
        resolved_at=row[11],
        resolution=row[12],
    )


def add_report(conn: sqlite3.Connection, new: NewReport) -> tuple[ReportRecord, bool]:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO reports (report_id, reporter_id, target_key, reason, details,"
        " conversation_id, message_seq, message_id, user_id, created_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new.report_id,
            new.reporter_id,
            new.target_key(),
            new.reason,
            new.details,
            new.conversation_id,
            new.message_seq,
            new.message_id,
            new.user_id,
            new.created_at,
            int(ReportStatus.OPEN),
        ),
    )
    row = conn.execute(
        f"SELECT {REPORT_COLUMNS} FROM reports WHERE reporter_id = ? AND target_key = ?",
        (new.reporter_id, new.target_key()),
    ).fetchone()
    return report_record(row), cursor.rowcount == 1


def get_report(conn: sqlite3.Connection, report_id: str) -> ReportRecord | None:
    row = conn.execute(
        f"SELECT {REPORT_COLUMNS} FROM reports WHERE report_id = ?", (report_id,)
    ).fetchone()
    return report_record(row) if row is not None else None


def list_reports(
    conn: sqlite3.Connection, status: ReportStatus | None, after_report_id: str, limit: int
) -> list[ReportRecord]:
    if status is None:
        rows = conn.execute(
            f"SELECT {REPORT_COLUMNS} FROM reports WHERE report_id > ? ORDER BY report_id LIMIT ?",
            (after_report_id, limit),
        )
    else:
        rows = conn.execute(
            f"SELECT {REPORT_COLUMNS} FROM reports WHERE status = ? AND report_id > ?"
            " ORDER BY report_id LIMIT ?",
            (int(status), after_report_id, limit),
        )
    return [report_record(r) for r in rows]


def resolve_report(
    conn: sqlite3.Connection, report_id: str, resolved_by: str, resolution: str, at: float
) -> ReportRecord:
    # Only an open report changes: the first resolution stays.
    conn.execute(
        "UPDATE reports SET status = ?, resolved_by = ?, resolved_at = ?, resolution = ?"
        " WHERE report_id = ? AND status = ?",
        (int(ReportStatus.RESOLVED), resolved_by, at, resolution, report_id, ReportStatus.OPEN),
    )
    record = get_report(conn, report_id)
    if record is None:
        raise NotFoundError(f"report {report_id} not found")
    return record


def set_ban(conn: sqlite3.Connection, ban: BanRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO bans (conversation_id, user_id, banned_by, banned_at, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        (ban.conversation_id, ban.user_id, ban.banned_by, ban.banned_at, ban.reason),
    )


def remove_ban(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> None:
    conn.execute(
        "DELETE FROM bans WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
    )


def get_ban(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> BanRecord | None:
    row = conn.execute(
        "SELECT conversation_id, user_id, banned_by, banned_at, reason FROM bans"
        " WHERE conversation_id = ? AND user_id = ?",
        (conversation_id, user_id),
    ).fetchone()
    return BanRecord(*row) if row is not None else None


def set_suspension(conn: sqlite3.Connection, suspension: SuspensionRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO suspensions (user_id, suspended_by, suspended_at, reason)"
        " VALUES (?, ?, ?, ?)",
        (
            suspension.user_id,
            suspension.suspended_by,
            suspension.suspended_at,
            suspension.reason,
        ),
    )


def remove_suspension(conn: sqlite3.Connection, user_id: str) -> None:
    conn.execute("DELETE FROM suspensions WHERE user_id = ?", (user_id,))


def get_suspension(conn: sqlite3.Connection, user_id: str) -> SuspensionRecord | None:
    row = conn.execute(
        "SELECT user_id, suspended_by, suspended_at, reason FROM suspensions WHERE user_id = ?",
        (user_id,),
    ).fetchone()
    return SuspensionRecord(*row) if row is not None else None
