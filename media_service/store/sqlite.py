"""The embedded media store: one SQLite file (the default of `chatmesh dev`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .base import MediaRecord, Reference, State

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
  media_id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL,
  conversation_kind INTEGER NOT NULL,
  uploader_id TEXT NOT NULL,
  state INTEGER NOT NULL,
  file_name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_at REAL NOT NULL,
  blob_key TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  blurhash TEXT NOT NULL,
  thumbnails TEXT NOT NULL,
  reject_reason TEXT NOT NULL,
  reject_detail TEXT NOT NULL,
  deleted_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS media_by_uploader ON media (uploader_id, created_at);
CREATE INDEX IF NOT EXISTS media_by_state ON media (state, created_at);
CREATE INDEX IF NOT EXISTS media_by_blob ON media (blob_key);
CREATE TABLE IF NOT EXISTS refs (
  media_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  created_at REAL NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (media_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_message ON refs (conversation_id, seq);
"""

_COLUMNS = (
    "media_id, conversation_id, conversation_kind, uploader_id, state, file_name, content_type,"
    " size_bytes, created_at, blob_key, sha256, width, height, blurhash, thumbnails,"
    " reject_reason, reject_detail, deleted_at"
)


def _row(record: MediaRecord) -> tuple[Any, ...]:
    return (
        record.media_id,
        record.conversation_id,
        record.conversation_kind,
        record.uploader_id,
        int(record.state),
        record.file_name,
        record.content_type,
        record.size_bytes,
        record.created_at,
        record.blob_key,
        record.sha256,
        record.width,
        record.height,
        record.blurhash,
        json.dumps(record.thumbnails, sort_keys=True),
        record.reject_reason,
        record.reject_detail,
        record.deleted_at,
    )


def _record(row: Sequence[Any]) -> MediaRecord:
    return MediaRecord(
        media_id=row[0],
        conversation_id=row[1],
        conversation_kind=row[2],
        uploader_id=row[3],
        state=State(row[4]),
        file_name=row[5],
        content_type=row[6],
        size_bytes=row[7],
        created_at=row[8],
        blob_key=row[9],
        sha256=row[10],
        width=row[11],
        height=row[12],
        blurhash=row[13],
        thumbnails=json.loads(row[14]),
        reject_reason=row[15],
        reject_detail=row[16],
        deleted_at=row[17],
    )


class SqliteMediaStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        # One connection, one statement at a time, off the event loop.
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None, "the media store is not open"

        def transaction() -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        async with self._lock:
            return await asyncio.to_thread(transaction)

    async def create(self, record: MediaRecord) -> None:
        def work(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    f"INSERT INTO media ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", _row(record)
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"media {record.media_id} exists") from exc

        await self._run(work)

    async def get(self, media_id: str) -> MediaRecord | None:
        def work(db: sqlite3.Connection) -> MediaRecord | None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM media WHERE media_id = ?", (media_id,)
            ).fetchone()
            return None if row is None else _record(row)

        return await self._run(work)

    async def update(self, record: MediaRecord, *, expect: State) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT state FROM media WHERE media_id = ?", (record.media_id,)
            ).fetchone()
            if row is None or row[0] != int(expect):
                return False
            db.execute("DELETE FROM media WHERE media_id = ?", (record.media_id,))
            db.execute(
                f"INSERT INTO media ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", _row(record)
            )
            return True

        return await self._run(work)

    async def add_reference(
        self, media_id: str, conversation_id: str, seq: int, created_at: float
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO refs (media_id, conversation_id, seq, created_at)"
                " VALUES (?, ?, ?, ?)",
                (media_id, conversation_id, seq, created_at),
            )
        )

    async def references(self, media_id: str) -> list[Reference]:
        def work(db: sqlite3.Connection) -> list[Reference]:
            rows = db.execute(
                "SELECT conversation_id, seq, deleted FROM refs WHERE media_id = ?"
                " ORDER BY conversation_id, seq",
                (media_id,),
            ).fetchall()
            return [Reference(c, s, bool(d)) for c, s, d in rows]

        return await self._run(work)

    async def delete_message(self, conversation_id: str, seq: int, now: float) -> list[str]:
        def work(db: sqlite3.Connection) -> list[str]:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT media_id FROM refs"
                    " WHERE conversation_id = ? AND seq = ? AND deleted = 0",
                    (conversation_id, seq),
                )
            ]
            db.execute(
                "UPDATE refs SET deleted = 1 WHERE conversation_id = ? AND seq = ?",
                (conversation_id, seq),
            )
            gone = []
            for media_id in ids:
                live = db.execute(
                    "SELECT 1 FROM refs WHERE media_id = ? AND deleted = 0 LIMIT 1", (media_id,)
                ).fetchone()
                if live is None:
                    db.execute(
                        "UPDATE media SET deleted_at = ? WHERE media_id = ? AND deleted_at IS NULL",
                        (now, media_id),
                    )
                    gone.append(media_id)
            return gone

        return await self._run(work)

    async def uploaded_bytes_since(self, uploader_id: str, since: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT COALESCE(SUM(size_bytes), 0) FROM media"
                " WHERE uploader_id = ? AND created_at >= ? AND state != ?",
                (uploader_id, since, int(State.REJECTED)),
            ).fetchone()
            return int(row[0])

        return await self._run(work)

    async def _select(self, where: str, args: tuple[Any, ...], limit: int) -> list[MediaRecord]:
        def work(db: sqlite3.Connection) -> list[MediaRecord]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM media WHERE {where} ORDER BY created_at LIMIT ?",
                (*args, limit),
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(work)

    async def expired_pending(self, created_before: float, limit: int) -> list[MediaRecord]:
        return await self._select(
            "state = ? AND created_at < ?", (int(State.PENDING), created_before), limit
        )

    async def deleted_before(self, deleted_before: float, limit: int) -> list[MediaRecord]:
        return await self._select(
            "deleted_at IS NOT NULL AND deleted_at < ?", (deleted_before,), limit
        )

    async def created_before(
        self, conversation_kind: int, created_before: float, limit: int
    ) -> list[MediaRecord]:
        return await self._select(
            "conversation_kind = ? AND deleted_at IS NULL AND COALESCE("
            "(SELECT MAX(r.created_at) FROM refs r WHERE r.media_id = media.media_id),"
            " media.created_at) < ?",
            (conversation_kind, created_before),
            limit,
        )

    async def purge(self, media_ids: Sequence[str]) -> None:
        def work(db: sqlite3.Connection) -> None:
            for media_id in media_ids:
                db.execute("DELETE FROM media WHERE media_id = ?", (media_id,))
                db.execute("DELETE FROM refs WHERE media_id = ?", (media_id,))

        await self._run(work)

    async def blob_in_use(self, blob_key: str, except_media_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT 1 FROM media WHERE blob_key = ? AND media_id != ?"
                " AND deleted_at IS NULL AND state = ? LIMIT 1",
                (blob_key, except_media_id, int(State.READY)),
            ).fetchone()
            return row is not None

        return await self._run(work)
