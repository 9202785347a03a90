"""Retention of the cluster store: purging the expired start of conversation logs.

A purge removes message and event rows below a new horizon and then moves the conversation's
`first_seq` up to it. The horizon is written with its own value as timestamp, so a slower,
concurrent purge never lowers it, with no LWT; the purged rows are deleted with a wall-clock
timestamp that shadows every seq-timestamped cell below it (see `_purge_conversation`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ..base import EventKind, Kind
from .rounds import RoundEngine
from .schema import BUCKET_SIZE
from .session import CqlSession
from .statements import bucket_of

# Conversations read per scan page, event rows read per page while looking for the horizon.
PURGE_SCAN_PAGE = 500
PURGE_EVENTS_PAGE = 1000


class Retention:
    """Purges expired logs, resuming each kind's scan of the heads where the last call stopped."""

    def __init__(self, session: CqlSession, rounds: RoundEngine) -> None:
        self._session = session
        self._rounds = rounds
        # Per kind: the conversation after which the next purge_expired call resumes its scan.
        self._purge_after: dict[Kind, str] = {}

    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        """Scans the conversation heads (token order, one `SELECT DISTINCT` page of static
        rows at a time, resuming where the previous call stopped) and purges the expired start
        of the log of each conversation of `kind` created before `before`. A call returns fewer
        than `limit` only when its scan reached the end of the table (the next call starts
        over)."""
        if limit <= 0:
            return 0
        removed = 0
        after = self._purge_after.pop(kind, None)
        while True:
            if after is None:
                rows = await self._session.run("scan_heads_first", (PURGE_SCAN_PAGE,))
            else:
                rows = await self._session.run("scan_heads_after", (after, PURGE_SCAN_PAGE))
            for row in rows:
                if (
                    row.kind == int(kind)
                    and (row.created_at or 0.0) < before
                    and (row.first_seq or 1) <= (row.last_seq or 0)
                ):
                    removed += await self._purge_conversation(
                        row.conversation_id, before, limit - removed
                    )
                    if removed >= limit:
                        # Resume at this conversation: it may have more expired messages.
                        if after is not None:
                            self._purge_after[kind] = after
                        return removed
                after = row.conversation_id
            if len(rows) < PURGE_SCAN_PAGE:
                return removed

    async def _purge_conversation(self, conversation_id: str, before: float, budget: int) -> int:
        """Purges one conversation's expired run of events (at most `budget` messages).

        Order: message rows, then event rows, then the horizon. A crash in between leaves rows
        gone below a horizon not yet moved: readers then see the log start at the first row
        that is left (the same as after the horizon moved), and the next purge recomputes the
        horizon from the rows that are left and writes it."""
        head = await self._rounds.settled_head(conversation_id)
        if head is None:
            return 0
        first = head.conversation.first_seq
        last = head.conversation.last_seq
        horizon = last + 1
        removed = 0
        lo = first
        found = False
        while not found and lo <= last:
            rows: list[Any] = []
            for bucket in range(bucket_of(lo), bucket_of(last) + 1):
                rows.extend(
                    await self._session.run(
                        "events_scan",
                        (conversation_id, bucket, lo, last, PURGE_EVENTS_PAGE - len(rows)),
                    )
                )
                if len(rows) >= PURGE_EVENTS_PAGE:
                    break
            for row in rows:
                if (row.occurred_at or 0.0) >= before or (
                    row.kind == int(EventKind.MESSAGE_CREATED) and removed >= budget
                ):
                    horizon = row.seq
                    found = True
                    break
                if row.kind == int(EventKind.MESSAGE_CREATED):
                    removed += 1
            if not rows or len(rows) < PURGE_EVENTS_PAGE:
                break
            lo = rows[-1].seq + 1
        if horizon <= first:
            return 0
        whole = range(bucket_of(first), bucket_of(horizon))
        # Rows in `messages` and `events` are only ever written with seq timestamps (small
        # integers), so a wall-clock timestamp (microseconds) shadows all of them, including the
        # late cells of a stalled writer (an edit that read its target before this purge): no
        # row below the horizon can come back. Readers never look below it anyway.
        ts = int(time.time() * 1_000_000)
        for table in ("messages", "events"):
            statements: list[tuple[str, Sequence[Any]]] = [
                (f"purge_{table}_bucket", (ts, conversation_id, b)) for b in whole
            ]
            if horizon % BUCKET_SIZE:
                statements.append(
                    (f"purge_{table}_below", (ts, conversation_id, bucket_of(horizon), horizon))
                )
            # One partition each: independent, idempotent, in parallel.
            await asyncio.gather(*(self._session.run(name, params) for name, params in statements))
        # Timestamp = value: a lower horizon (a slower, concurrent purge) never overwrites a
        # higher one, without an LWT.
        await self._session.run("set_first_seq", (horizon, horizon, conversation_id))
        self._rounds.raise_horizon(conversation_id, horizon)
        return removed
