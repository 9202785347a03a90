"""The sweeper on the embedded stores with a manual clock: deleted messages' media lose their
objects after the grace period (not before), retention removes media whose newest message is
older than its kind's period, and objects shared by duplicates stay while one record lives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media_service.store.base import MediaRecord, State
from media_service.store.sqlite import SqliteMediaStore
from media_service.sweeper import MediaSweeper, SweepPolicy
from tests.media.conftest import FsBlobs

GROUP = 2
DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMediaStore]:
    media = SqliteMediaStore(str(tmp_path / "media.db"))
    await media.open()
    yield media
    await media.close()


async def ready(
    store: SqliteMediaStore, blobs: FsBlobs, media_id: str, blob_key: str, at: float
) -> MediaRecord:
    record = MediaRecord(
        media_id=media_id,
        conversation_id="c1",
        conversation_kind=GROUP,
        uploader_id="alice",
        state=State.READY,
        file_name="a.jpg",
        content_type="image/jpeg",
        size_bytes=3,
        created_at=at,
        blob_key=blob_key,
        sha256="ab" * 32,
        thumbnails={"small": blob_key + "-small"},
    )
    await store.create(record)
    if await blobs.store.stat(blob_key) is None:
        await blobs.store.write(blob_key, b"abc", content_type="image/jpeg")
        await blobs.store.write(blob_key + "-small", b"a", content_type="image/jpeg")
    return record


async def test_deleted_media_objects_go_after_the_grace_period(
    store: SqliteMediaStore, fs_blobs: FsBlobs
) -> None:
    clock = fs_blobs.clock
    now = clock.now()
    await ready(store, fs_blobs, "m1", "objects/ab/shared", now)
    await ready(store, fs_blobs, "m2", "objects/ab/shared", now)  # the same bytes
    await store.add_reference("m1", "c1", 1, now)
    await store.add_reference("m2", "c1", 2, now)
    sweeper = MediaSweeper(store, fs_blobs.store, clock, SweepPolicy(deleted_grace_s=DAY))
    assert await store.delete_message("c1", 1, clock.now()) == ["m1"]
    clock.advance(DAY / 2)
    assert await sweeper.sweep_once() == 0
    clock.advance(DAY)
    assert await sweeper.sweep_once() == 1
    assert await store.get("m1") is None
    # m2 still uses the shared object and its thumbnail.
    assert await fs_blobs.store.stat("objects/ab/shared") is not None
    await store.delete_message("c1", 2, clock.now())
    clock.advance(2 * DAY)
    assert await sweeper.sweep_once() == 1
    assert await fs_blobs.store.stat("objects/ab/shared") is None
    assert await fs_blobs.store.stat("objects/ab/shared-small") is None


async def test_retention_follows_the_newest_message(
    store: SqliteMediaStore, fs_blobs: FsBlobs
) -> None:
    clock = fs_blobs.clock
    start = clock.now()
    await ready(store, fs_blobs, "old", "objects/aa/old", start)
    await ready(store, fs_blobs, "reused", "objects/aa/reused", start)
    await store.add_reference("old", "c1", 1, start)
    await store.add_reference("reused", "c1", 2, start)
    policy = SweepPolicy(retention_s={GROUP: 30 * DAY})
    sweeper = MediaSweeper(store, fs_blobs.store, clock, policy)
    clock.advance(20 * DAY)
    await store.add_reference("reused", "c1", 9, clock.now())  # attached again, later
    clock.advance(15 * DAY)
    assert await sweeper.sweep_once() == 1
    assert await store.get("old") is None
    assert await fs_blobs.store.stat("objects/aa/old") is None
    assert await store.get("reused") is not None
    clock.advance(20 * DAY)
    assert await sweeper.sweep_once() == 1
    assert await store.get("reused") is None
