"""Removes what no one can reach any more, on either blob store: uploads never completed,
media of deleted messages after the grace period, and media older than its conversation kind's
retention. Each pass handles a bounded batch; records go only after their objects are gone, so
a pass that fails half-way is redone by the next."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import Counter

from chatmesh_common.clock import Clock

from .blobs.base import BlobStore
from .media import upload_key
from .store.base import MediaRecord, MediaStore

log = logging.getLogger(__name__)

SWEPT = Counter("chatmesh_media_swept_total", "Media removed by the sweeper, by why.", ["why"])


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    pending_expiry_s: float = 3600.0
    deleted_grace_s: float = 86400.0
    # Conversation kind number -> seconds media is kept (kinds without an entry: forever).
    retention_s: Mapping[int, float] | None = None
    batch: int = 500


class MediaSweeper:
    def __init__(
        self, store: MediaStore, blobs: BlobStore, clock: Clock, policy: SweepPolicy
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._clock = clock
        self._policy = policy
        self._task: asyncio.Task[None] | None = None

    async def _remove(self, records: list[MediaRecord], why: str) -> int:
        if not records:
            return 0
        keys: list[str] = []
        for record in records:
            keys.append(upload_key(record.media_id))
            # Duplicates share objects: keep them while another live record uses them.
            if record.blob_key and not await self._store.blob_in_use(
                record.blob_key, record.media_id
            ):
                keys.append(record.blob_key)
                keys.extend(record.thumbnails.values())
        await self._blobs.delete(keys)
        await self._store.purge([r.media_id for r in records])
        SWEPT.labels(why).inc(len(records))
        return len(records)

    async def sweep_once(self) -> int:
        """One pass; how many media records it removed."""
        now = self._clock.now()
        policy = self._policy
        removed = await self._remove(
            await self._store.expired_pending(now - policy.pending_expiry_s, policy.batch),
            "abandoned",
        )
        removed += await self._remove(
            await self._store.deleted_before(now - policy.deleted_grace_s, policy.batch),
            "deleted",
        )
        for kind, keep_s in (policy.retention_s or {}).items():
            # chat_service's retention purged the messages: the media goes with them.
            old = await self._store.created_before(kind, now - keep_s, policy.batch)
            removed += await self._remove(old, "retention")
        return removed

    async def _loop(self, every_s: float) -> None:
        while True:
            try:
                removed = await self.sweep_once()
                if removed:
                    log.info("media sweeper removed %d media", removed)
            except Exception:
                log.exception("media sweep failed; retried next time")
            await asyncio.sleep(every_s)

    def start(self, every_s: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(every_s), name="media-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
