"""Retention: the one way messages leave a conversation's log.

Each conversation kind may have a retention period
(`CHATMESH_RETENTION_{DIRECT,GROUP,CHANNEL}_DAYS`; 0 = keep forever, the default). The sweeper
runs on start and then every `interval_s`: for each kind with a period it asks the store to purge
what is older than `now - period` (`ChatStore.purge_expired`), one bounded batch at a time, until
a batch comes back short. The store moves each conversation's horizon (`first_seq`) past what it
purged; seqs are never renumbered or reused. See docs/storage.md ("Retention").

Every replica may run a sweeper: purges are idempotent and the horizon only moves forward, so
two sweepers at once do the same work twice at worst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from chatmesh_common.clock import Clock, SystemClock

from .config import ChatConfig
from .store.base import ChatStore, Kind

log = logging.getLogger(__name__)

DAY_S = 86_400.0
BATCH = 500


def retention_periods(config: ChatConfig) -> dict[Kind, float]:
    """Seconds kept per kind, for the kinds that have a retention (the others keep forever)."""
    days = {
        Kind.DIRECT: config.retention_direct_days,
        Kind.GROUP: config.retention_group_days,
        Kind.CHANNEL: config.retention_channel_days,
    }
    return {kind: d * DAY_S for kind, d in days.items() if d > 0}


class RetentionSweeper:
    def __init__(
        self,
        store: ChatStore,
        periods: Mapping[Kind, float],
        interval_s: float = 3600.0,
        clock: Clock | None = None,
        batch: int = BATCH,
    ) -> None:
        if batch <= 0:
            raise ValueError("batch must be positive")
        self._store = store
        self._periods = {kind: s for kind, s in periods.items() if s > 0}
        self._interval_s = interval_s
        self._clock = clock or SystemClock()
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.purged = 0

    @property
    def enabled(self) -> bool:
        return bool(self._periods)

    async def sweep(self) -> int:
        """One pass over every kind with a retention; returns the messages purged."""
        now = self._clock.now()
        total = 0
        for kind, period in self._periods.items():
            before = now - period
            while True:
                removed = await self._store.purge_expired(kind, before, self._batch)
                total += removed
                if removed < self._batch:
                    break
        if total:
            log.info("retention purged %d messages", total)
        self.purged += total
        return total

    async def start(self) -> None:
        if self._task is None and self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                # The store refused a purge: the next pass tries again.
                log.exception("retention sweep failed")
            await asyncio.sleep(self._interval_s)
