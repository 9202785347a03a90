"""The moderation tables of the cluster store: reports, bans and suspensions.

A report is written first (its row and its queue entries), then claimed in `report_keys` with an
LWT on (reporter, target): the loser of a race (or a retry) removes what it wrote and returns
the winner's report, so a reporter's target has one report. Resolving is an LWT on the report's
status (the first resolution stays); the queue entries follow it, and a listing trusts the
report row, not the queue, so a resolver that died between the two is never seen.
"""

from __future__ import annotations

import asyncio
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
from .moderation_cql import ALL_REPORTS
from .session import CqlSession


def report_from_row(row: Any) -> ReportRecord:
    return ReportRecord(
        report_id=row.report_id,
        reporter_id=row.reporter_id or "",
        reason=row.reason or 0,
        details=row.details or "",
        conversation_id=row.conversation_id or "",
        message_seq=row.message_seq or 0,
        message_id=row.message_id or "",
        user_id=row.user_id or "",
        created_at=row.created_at or 0.0,
        status=ReportStatus(row.status or ReportStatus.OPEN),
        resolved_by=row.resolved_by or "",
        resolved_at=row.resolved_at,
        resolution=row.resolution or "",
    )


class Moderation:
    """The moderation operations of ScyllaChatStore."""

    def __init__(self, session: CqlSession) -> None:
        self._session = session

    async def add_report(self, new: NewReport) -> tuple[ReportRecord, bool]:
        run = self._session.run
        await run(
            "insert_report",
            (
                new.report_id,
                new.reporter_id,
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
        queued = (ALL_REPORTS, int(ReportStatus.OPEN))
        await asyncio.gather(*(run("queue_add", (q, new.report_id)) for q in queued))
        claim = await run("claim_report_key", (new.reporter_id, new.target_key(), new.report_id))
        if claim[0][0]:
            record = await self.get_report(new.report_id)
            assert record is not None
            return record, True
        # Reported before (or a concurrent duplicate won): ours goes, theirs stands.
        await asyncio.gather(*(run("queue_drop", (q, new.report_id)) for q in queued))
        await run("drop_report", (new.report_id,))
        existing = await self.get_report(claim[0].report_id)
        if existing is None:
            raise NotFoundError(f"report {claim[0].report_id} is claimed but missing")
        return existing, False

    async def get_report(self, report_id: str) -> ReportRecord | None:
        rows = await self._session.run("report", (report_id,))
        return report_from_row(rows[0]) if rows and rows[0].status is not None else None

    async def list_reports(
        self, status: ReportStatus | None, after_report_id: str, limit: int
    ) -> list[ReportRecord]:
        partition = ALL_REPORTS if status is None else int(status)
        found: list[ReportRecord] = []
        after = after_report_id
        while len(found) < limit:
            want = limit - len(found)
            ids = [
                r.report_id for r in await self._session.run("queue_page", (partition, after, want))
            ]
            if not ids:
                break
            after = ids[-1]
            records = await asyncio.gather(*(self.get_report(i) for i in ids))
            for report_id, record in zip(ids, records, strict=True):
                if record is None:
                    continue  # a duplicate's entry whose cleanup did not finish
                if status is not None and record.status != status:
                    # The queue lags the report (a resolver stopped half-way): tidy it.
                    await self._session.run("queue_drop", (partition, report_id))
                    continue
                found.append(record)
            if len(ids) < want:
                break
        return found

    async def resolve_report(
        self, report_id: str, resolved_by: str, resolution: str, at: float
    ) -> ReportRecord:
        result = await self._session.run(
            "resolve_report",
            (
                int(ReportStatus.RESOLVED),
                resolved_by,
                at,
                resolution,
                report_id,
                int(ReportStatus.OPEN),
            ),
        )
        if not result[0][0] and getattr(result[0], "status", None) is None:
            raise NotFoundError(f"report {report_id} not found")
        await self._session.run("queue_add", (int(ReportStatus.RESOLVED), report_id))
        await self._session.run("queue_drop", (int(ReportStatus.OPEN), report_id))
        record = await self.get_report(report_id)
        if record is None:
            raise NotFoundError(f"report {report_id} not found")
        return record

    async def set_ban(self, ban: BanRecord) -> None:
        await self._session.run(
            "set_ban",
            (ban.conversation_id, ban.user_id, ban.banned_by, ban.banned_at, ban.reason),
        )

    async def remove_ban(self, conversation_id: str, user_id: str) -> None:
        await self._session.run("remove_ban", (conversation_id, user_id))

    async def get_ban(self, conversation_id: str, user_id: str) -> BanRecord | None:
        rows = await self._session.run("ban", (conversation_id, user_id))
        if not rows:
            return None
        r = rows[0]
        return BanRecord(
            r.conversation_id, r.user_id, r.banned_by or "", r.banned_at, r.reason or ""
        )

    async def set_suspension(self, suspension: SuspensionRecord) -> None:
        """The suspension row, then a fence in the log head of every conversation of the user:
        when this returns, every round that writes for the user fails its LWT there."""
        await self._session.run(
            "set_suspension",
            (
                suspension.user_id,
                suspension.suspended_by,
                suspension.suspended_at,
                suspension.reason,
            ),
        )
        rows = await self._session.run("user_conversations", (suspension.user_id,))
        await asyncio.gather(*(self._fence(r.conversation_id, suspension) for r in rows))

    async def remove_suspension(self, user_id: str) -> None:
        """The row, then the fences of the user's conversations; a fence this misses (one of
        a conversation left meanwhile) is dropped by the next round that meets it."""
        await self._session.run("remove_suspension", (user_id,))
        rows = await self._session.run("user_conversations", (user_id,))
        heads = await asyncio.gather(
            *(self._session.run("head", (r.conversation_id,)) for r in rows)
        )
        await asyncio.gather(
            *(
                self._session.run("drop_fence", (user_id, h[0].conversation_id, user_id, at))
                for h in heads
                if h and (at := (h[0].fences or {}).get(user_id)) is not None
            )
        )

    async def fence_if_suspended(self, conversation_id: str, user_ids: Sequence[str]) -> None:
        """Fences users just added to a conversation if they are suspended."""
        suspensions = await asyncio.gather(*(self.get_suspension(u) for u in user_ids))
        await asyncio.gather(
            *(self._fence(conversation_id, s) for s in suspensions if s is not None)
        )

    async def _fence(self, conversation_id: str, suspension: SuspensionRecord) -> None:
        # IF EXISTS: a conversation that is gone (or a failed create) gets no head.
        await self._session.run(
            "set_fence", (suspension.user_id, suspension.suspended_at, conversation_id)
        )

    async def get_suspension(self, user_id: str) -> SuspensionRecord | None:
        rows = await self._session.run("suspension", (user_id,))
        if not rows:
            return None
        r = rows[0]
        return SuspensionRecord(r.user_id, r.suspended_by or "", r.suspended_at, r.reason or "")
