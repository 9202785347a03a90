"""The embedded chat store: one SQLite file in WAL mode, written with group commit.

This class composes the parts: `schema` (tables, connection settings, migrations), `writer` (the
one thread that writes, batching jobs into one transaction and one fsync), `transactions` (the
write jobs) and `queries` (the reads). Reads use a separate connection on the event loop's
thread: WAL readers never wait for the writer, and point reads are cheaper inline than a hop to
a thread. Every operation is named and timed by `metrics.timed_operations`; the name of a write
is also the name of its job in the writer's transaction metrics.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from ..base import (
    AppendResult,
    BanRecord,
    ConversationRecord,
    EventKind,
    EventRecord,
    HeldRecord,
    HeldState,
    HistoryDirection,
    Kind,
    MemberRecord,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    NewReport,
    OutboxEntry,
    ReportRecord,
    ReportStatus,
    Role,
    SuspendedError,
    SuspensionRecord,
)
from ..metrics import timed_operations
from . import held, moderation, queries, transactions
from .schema import connect, migrate
from .writer import GroupCommitWriter


@timed_operations("sqlite")
class SqliteChatStore:
    """ChatStore on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._writer = GroupCommitWriter(self._path)
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        migrate(self._path)
        self._writer.start()
        self._reader = connect(self._path)

    async def close(self) -> None:
        await asyncio.to_thread(self._writer.stop)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def _r(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    # Conversations

    async def create_conversation(self, new: NewConversation) -> tuple[ConversationRecord, bool]:
        return await self._writer.submit(
            "create_conversation", lambda conn: transactions.create_conversation(conn, new)
        )

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        return queries.get_conversation(self._r, conversation_id)

    async def update_conversation(
        self, conversation_id: str, title: str | None, archived: bool | None, at: float
    ) -> ConversationRecord:
        return await self._writer.submit(
            "update_conversation",
            lambda conn: transactions.update_conversation(conn, conversation_id, title, archived),
        )

    # Members

    async def get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None:
        return queries.get_member(self._r, conversation_id, user_id)

    async def member_role(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, Role] | None:
        conversation = queries.get_conversation(self._r, conversation_id)
        member = queries.get_member(self._r, conversation_id, user_id)
        if conversation is None or member is None:
            return None
        suspension = moderation.get_suspension(self._r, user_id)
        if suspension is not None:
            raise SuspendedError(suspension.refusal())
        return conversation, member.role

    async def list_members(
        self, conversation_id: str, after_user_id: str, limit: int
    ) -> list[MemberRecord]:
        return queries.list_members(self._r, conversation_id, after_user_id, limit)

    async def member_ids(self, conversation_id: str) -> list[str]:
        return queries.member_ids(self._r, conversation_id)

    async def members_since(self, conversation_id: str, seq: int) -> list[str]:
        return queries.member_ids(self._r, conversation_id)

    async def user_conversations(self, user_id: str) -> list[MemberRecord]:
        return queries.user_conversations(self._r, user_id)

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        return await self._writer.submit(
            "change_members",
            lambda conn: transactions.change_members(conn, conversation_id, actor_id, changes, at),
        )

    async def set_muted(self, conversation_id: str, user_id: str, muted: bool) -> MemberRecord:
        return await self._writer.submit(
            "set_muted", lambda conn: transactions.set_muted(conn, conversation_id, user_id, muted)
        )

    # Messages and the log

    async def append_message(self, new: NewMessage) -> AppendResult:
        return await self._writer.submit(
            "append_message", lambda conn: transactions.append_message(conn, new)
        )

    async def edit_message(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        return await self._writer.submit(
            "edit_message",
            lambda conn: transactions.change_message(
                conn, conversation_id, seq, actor_id, at, EventKind.MESSAGE_EDITED, body
            ),
        )

    async def delete_message(
        self, conversation_id: str, seq: int, actor_id: str, at: float, *, moderated: bool = False
    ) -> EventRecord:
        return await self._writer.submit(
            "delete_message",
            lambda conn: transactions.change_message(
                conn,
                conversation_id,
                seq,
                actor_id,
                at,
                EventKind.MESSAGE_DELETED,
                None,
                moderated=moderated,
            ),
        )

    async def get_message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        return queries.get_message(self._r, conversation_id, seq)

    async def get_message_by_id(
        self, conversation_id: str, message_id: str
    ) -> MessageRecord | None:
        return queries.get_message_by_id(self._r, conversation_id, message_id)

    async def history(
        self,
        conversation_id: str,
        before_seq: int,
        after_seq: int,
        limit: int,
        direction: HistoryDirection = HistoryDirection.BACKWARD,
    ) -> list[MessageRecord]:
        return queries.history(self._r, conversation_id, before_seq, after_seq, limit, direction)

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[EventRecord]:
        return queries.events_after(self._r, conversation_id, after_seq, limit)

    # The outbox

    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        return queries.pending_outbox(self._r, limit)

    async def outbox_entry(self, conversation_id: str) -> OutboxEntry | None:
        return queries.outbox_entry(self._r, conversation_id)

    async def clear_outbox(self, relayed: Sequence[tuple[str, int]]) -> None:
        if relayed:
            await self._writer.submit(
                "clear_outbox", lambda conn: transactions.clear_outbox(conn, relayed)
            )

    # Retention

    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        """One writer job: see `transactions.purge_expired`."""
        if limit <= 0:
            return 0
        return await self._writer.submit(
            "purge_expired", lambda conn: transactions.purge_expired(conn, kind, before, limit)
        )

    # Receipts and unread

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        return await self._writer.submit(
            "mark_read", lambda conn: transactions.mark_read(conn, conversation_id, user_id, seq)
        )

    async def mark_delivered(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        return await self._writer.submit(
            "mark_delivered",
            lambda conn: transactions.mark_delivered(conn, conversation_id, user_id, seq),
        )

    async def count_unread(self, conversation_id: str, user_id: str, after_seq: int) -> int:
        return queries.count_unread(self._r, conversation_id, user_id, after_seq)

    # Blocks

    async def set_block(self, user_id: str, blocked_user_id: str, blocked: bool) -> None:
        at = time.time()
        await self._writer.submit(
            "set_block",
            lambda conn: transactions.set_block(conn, user_id, blocked_user_id, blocked, at),
        )

    async def is_blocked(self, user_id: str, blocked_user_id: str) -> bool:
        return queries.is_blocked(self._r, user_id, blocked_user_id)

    async def list_blocked(self, user_id: str) -> list[str]:
        return queries.list_blocked(self._r, user_id)

    # Moderation

    async def add_report(self, new: NewReport) -> tuple[ReportRecord, bool]:
        return await self._writer.submit(
            "add_report", lambda conn: moderation.add_report(conn, new)
        )

    async def get_report(self, report_id: str) -> ReportRecord | None:
        return moderation.get_report(self._r, report_id)

    async def list_reports(
        self, status: ReportStatus | None, after_report_id: str, limit: int
    ) -> list[ReportRecord]:
        return moderation.list_reports(self._r, status, after_report_id, limit)

    async def resolve_report(
        self, report_id: str, resolved_by: str, resolution: str, at: float
    ) -> ReportRecord:
        return await self._writer.submit(
            "resolve_report",
            lambda conn: moderation.resolve_report(conn, report_id, resolved_by, resolution, at),
        )

    async def set_ban(self, ban: BanRecord) -> None:
        await self._writer.submit("set_ban", lambda conn: moderation.set_ban(conn, ban))

    async def remove_ban(self, conversation_id: str, user_id: str) -> None:
        await self._writer.submit(
            "remove_ban", lambda conn: moderation.remove_ban(conn, conversation_id, user_id)
        )

    async def get_ban(self, conversation_id: str, user_id: str) -> BanRecord | None:
        return moderation.get_ban(self._r, conversation_id, user_id)

    async def set_suspension(self, suspension: SuspensionRecord) -> None:
        await self._writer.submit(
            "set_suspension", lambda conn: moderation.set_suspension(conn, suspension)
        )

    async def remove_suspension(self, user_id: str) -> None:
        await self._writer.submit(
            "remove_suspension", lambda conn: moderation.remove_suspension(conn, user_id)
        )

    async def get_suspension(self, user_id: str) -> SuspensionRecord | None:
        return moderation.get_suspension(self._r, user_id)

    # Messages held for review

    async def hold_message(
        self, new: NewMessage, reason: str, at: float
    ) -> tuple[HeldRecord, bool]:
        return await self._writer.submit(
            "hold_message", lambda conn: held.hold_message(conn, new, reason, at)
        )

    async def get_held(self, message_id: str) -> HeldRecord | None:
        return held.get_held(self._r, message_id)

    async def list_held(self, after_message_id: str, limit: int) -> list[HeldRecord]:
        return held.list_held(self._r, after_message_id, limit)

    async def decide_held(self, message_id: str, state: HeldState, by: str) -> HeldRecord:
        return await self._writer.submit(
            "decide_held", lambda conn: held.decide_held(conn, message_id, state, by)
        )
