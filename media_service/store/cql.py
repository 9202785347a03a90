"""The cluster media store: ScyllaDB (or Apache Cassandra 4+) through scylla-driver.

Tables (created by cql_schema's numbered migrations):

- `media` (media_id): the record. Every write to it is a lightweight transaction, so plain
  and Paxos timestamps never mix on one row: create is `IF NOT EXISTS` (a duplicate id is a
  ValueError), update is `IF state = <expect>` (the compare-and-set of CompleteUpload), marking it
  deleted is `IF state IN (...) AND deleted_at = null` (never creates a row for an unknown id),
  purge is `IF EXISTS`.
- `media_refs` (media_id | conversation_id, seq): the messages attaching a media id, and
  `message_media` ((conversation_id, seq) | media_id): the same pairs by message, which
  delete_message reads. add_reference never writes `deleted`, so a replayed add after the delete
  leaves the reference deleted (idempotent like the embedded store's INSERT OR IGNORE).
- `uploader_media` (uploader_id | created_at, media_id) with the size and whether it was
  rejected: the quota sum is one slice of one partition. Its rows expire `quota_window_s` after
  their last write, which bounds the partition; `uploaded_bytes_since` answers for windows up to
  that long (media_service asks for 24 hours).
- `blob_media` (blob_key | media_id): the records using a blob key, for blob_in_use.
- `media_timeline` ((timeline, day) | at, media_id) and `media_timeline_buckets`
  (timeline | day), for the sweeper's three time queries without ALLOW FILTERING or secondary
  indexes. The timelines are `pending` (at = created_at), `deleted` (at = deleted_at) and
  `live:<kind>` (at = created_at, and each reference's created_at). A query lists the days of
  its timeline up to the cutoff, then reads each day's partition in clustering order, page by
  page, until it has `limit` records.

Index entries are written before the record change they describe and are never trusted: a read
checks every entry against the record (and, for retention, the record's references) and deletes
entries that no longer describe it (a completed upload's `pending` entry, a retention entry older
than the newest reference, an entry of a purged record). So a crash between the two writes leaves
at worst a stale entry, never a record the sweeper cannot find. Only the binder writes retention
entries from add_reference, and it redelivers an event until it is handled, so an entry written
for a reference that was not (yet) stored is kept, not deleted.

Dropping a stale entry cannot race the write it precedes: entries are written with times of
about now (an upload, a deletion, a message being sent) and the sweeper asks only for entries
older than a cutoff an hour or more in the past.

A day found empty that lies wholly before the cutoff is dropped from `media_timeline_buckets`
with `USING TIMESTAMP <when the read began>`: writers add the entry first and the day after it,
so a day that gets an entry while it is being dropped is written with a later timestamp and stays.
Days are UTC days of the times given, so only about one a day per timeline is ever listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from .base import MediaRecord, Reference, State
from .cql_schema import BUCKET_SECONDS, migrate, valid_keyspace
from .cql_session import CqlSession

T = TypeVar("T")

DEFAULT_QUOTA_WINDOW_S = 2 * 86400

PENDING: Final = "pending"
DELETED: Final = "deleted"

_MEDIA_COLUMNS = (
    "media_id, conversation_id, conversation_kind, uploader_id, state, file_name, content_type,"
    " size_bytes, created_at, blob_key, sha256, width, height, blurhash, thumbnails,"
    " reject_reason, reject_detail, deleted_at"
)
_SETS = ", ".join(f"{c.strip()} = ?" for c in _MEDIA_COLUMNS.split(",")[1:])
# check(at, record): True a match, False skip (keep the entry), None the entry is stale.
Check = Callable[[float, MediaRecord | None], Awaitable[bool | None]]

_LIVE_STATES = ", ".join(str(int(s)) for s in State)

STATEMENTS: Final[Mapping[str, str]] = {
    "create": f"INSERT INTO {{ks}}.media ({_MEDIA_COLUMNS}) VALUES ({', '.join('?' * 18)})"
    " IF NOT EXISTS",
    "get": f"SELECT {_MEDIA_COLUMNS} FROM {{ks}}.media WHERE media_id = ?",
    "update": f"UPDATE {{ks}}.media SET {_SETS} WHERE media_id = ? IF state = ?",
    "mark_deleted": "UPDATE {ks}.media SET deleted_at = ? WHERE media_id = ?"
    f" IF state IN ({_LIVE_STATES}) AND deleted_at = null",
    "delete": "DELETE FROM {ks}.media WHERE media_id = ? IF EXISTS",
    "add_ref": "INSERT INTO {ks}.media_refs (media_id, conversation_id, seq, created_at)"
    " VALUES (?, ?, ?, ?)",
    "refs": "SELECT conversation_id, seq, created_at, deleted FROM {ks}.media_refs"
    " WHERE media_id = ?",
    "ref": "SELECT deleted FROM {ks}.media_refs"
    " WHERE media_id = ? AND conversation_id = ? AND seq = ?",
    "delete_ref": "UPDATE {ks}.media_refs SET deleted = true"
    " WHERE media_id = ? AND conversation_id = ? AND seq = ?",
    "drop_refs": "DELETE FROM {ks}.media_refs WHERE media_id = ?",
    "add_message_media": "INSERT INTO {ks}.message_media (conversation_id, seq, media_id)"
    " VALUES (?, ?, ?)",
    "message_media": "SELECT media_id FROM {ks}.message_media"
    " WHERE conversation_id = ? AND seq = ?",
    "drop_message_media": "DELETE FROM {ks}.message_media"
    " WHERE conversation_id = ? AND seq = ? AND media_id = ?",
    "put_upload": "INSERT INTO {ks}.uploader_media (uploader_id, created_at, media_id,"
    " size_bytes, rejected) VALUES (?, ?, ?, ?, ?) USING TTL ?",
    "uploads_since": "SELECT size_bytes, rejected FROM {ks}.uploader_media"
    " WHERE uploader_id = ? AND created_at >= ?",
    "drop_upload": "DELETE FROM {ks}.uploader_media"
    " WHERE uploader_id = ? AND created_at = ? AND media_id = ?",
    "add_blob": "INSERT INTO {ks}.blob_media (blob_key, media_id) VALUES (?, ?)",
    "blob_media": "SELECT media_id FROM {ks}.blob_media WHERE blob_key = ?",
    "drop_blob": "DELETE FROM {ks}.blob_media WHERE blob_key = ? AND media_id = ?",
    "add_entry": "INSERT INTO {ks}.media_timeline (timeline, bucket, at, media_id)"
    " VALUES (?, ?, ?, ?)",
    "entries": "SELECT at, media_id FROM {ks}.media_timeline"
    " WHERE timeline = ? AND bucket = ? AND at < ?",
    "drop_entry": "DELETE FROM {ks}.media_timeline"
    " WHERE timeline = ? AND bucket = ? AND at = ? AND media_id = ?",
    "add_bucket": "INSERT INTO {ks}.media_timeline_buckets (timeline, bucket) VALUES (?, ?)",
    "buckets": "SELECT bucket FROM {ks}.media_timeline_buckets WHERE timeline = ? AND bucket <= ?",
    "drop_bucket": "DELETE FROM {ks}.media_timeline_buckets USING TIMESTAMP ?"
    " WHERE timeline = ? AND bucket = ?",
}


def bucket_of(at: float) -> int:
    return math.floor(at / BUCKET_SECONDS)


def live_timeline(conversation_kind: int) -> str:
    return f"live:{conversation_kind}"


def _values(record: MediaRecord) -> tuple[Any, ...]:
    """The record's columns after media_id, in _MEDIA_COLUMNS order."""
    return (
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
        dict(record.thumbnails),
        record.reject_reason,
        record.reject_detail,
        record.deleted_at,
    )


def _record(row: Sequence[Any]) -> MediaRecord:
    return MediaRecord(
        media_id=row[0],
        conversation_id=row[1] or "",
        conversation_kind=row[2] or 0,
        uploader_id=row[3] or "",
        state=State(row[4]),
        file_name=row[5] or "",
        content_type=row[6] or "",
        size_bytes=row[7] or 0,
        created_at=row[8] or 0.0,
        blob_key=row[9] or "",
        sha256=row[10] or "",
        width=row[11] or 0,
        height=row[12] or 0,
        blurhash=row[13] or "",
        # An empty map reads back as null.
        thumbnails=dict(row[14] or {}),
        reject_reason=row[15] or "",
        reject_detail=row[16] or "",
        deleted_at=row[17],
    )


class CqlMediaStore:
    """MediaStore on a ScyllaDB/Cassandra cluster.

    `replication` is used when the keyspace is created (default: NetworkTopologyStrategy with 3
    replicas in `local_dc`); with `migrate_on_open` false the schema must already be there.
    `cluster_options` go to the driver's Cluster (e.g. `auth_provider`, `ssl_context`).
    """

    def __init__(
        self,
        contact_points: Sequence[str],
        *,
        port: int = 9042,
        local_dc: str = "datacenter1",
        keyspace: str = "chatmesh_media",
        replication: Mapping[str, Any] | None = None,
        consistency: str = "LOCAL_QUORUM",
        serial_consistency: str = "LOCAL_SERIAL",
        request_timeout: float = 10.0,
        migrate_on_open: bool = True,
        quota_window_s: int = DEFAULT_QUOTA_WINDOW_S,
        page_size: int = 500,
        concurrency: int = 32,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        if quota_window_s < 86400:
            raise ValueError("quota_window_s must be at least 24 h (the upload quota's window)")
        self._keyspace = valid_keyspace(keyspace)
        self._replication = dict(replication or {"class": "NetworkTopologyStrategy", local_dc: 3})
        self._migrate_on_open = migrate_on_open
        self._quota_ttl = int(quota_window_s)
        self._page_size = page_size
        # Requests one step (a page of a time query, the records of a purge) has in flight.
        self._concurrency = concurrency
        self._session = CqlSession(
            contact_points,
            port=port,
            local_dc=local_dc,
            consistency=consistency,
            serial_consistency=serial_consistency,
            request_timeout=request_timeout,
            cluster_options=cluster_options or {},
        )

    # Lifecycle

    async def open(self) -> None:
        ks = self._keyspace

        def setup(session: Any) -> None:
            if self._migrate_on_open:
                migrate(session, ks, self._replication)

        statements = {name: cql.format(ks=ks) for name, cql in STATEMENTS.items()}
        await asyncio.to_thread(self._session.connect, setup, statements)

    async def close(self) -> None:
        await self._session.close()

    # Records

    async def create(self, record: MediaRecord) -> None:
        # Index entries first: a crash after them leaves entries that reads discard.
        await self._index(PENDING, record.created_at, record.media_id)
        await self._index(
            live_timeline(record.conversation_kind), record.created_at, record.media_id
        )
        if not await self._session.applied("create", (record.media_id, *_values(record))):
            existing = await self.get(record.media_id)
            if existing is not None and existing.created_at != record.created_at:
                await self._drop_entry(PENDING, record.created_at, record.media_id)
                await self._drop_entry(
                    live_timeline(record.conversation_kind), record.created_at, record.media_id
                )
            raise ValueError(f"media {record.media_id} exists")
        await self._put_upload(record)

    async def get(self, media_id: str) -> MediaRecord | None:
        rows = await self._session.run("get", (media_id,))
        return _record(rows[0]) if rows else None

    async def update(self, record: MediaRecord, *, expect: State) -> bool:
        if record.blob_key:
            await self._session.run("add_blob", (record.blob_key, record.media_id))
        if record.state is State.PENDING:
            await self._index(PENDING, record.created_at, record.media_id)
        if record.deleted_at is not None:
            await self._index(DELETED, record.deleted_at, record.media_id)
        applied = await self._session.applied(
            "update", (*_values(record), record.media_id, int(expect))
        )
        if applied:
            await self._put_upload(record)
            if record.state is not State.PENDING:
                await self._drop_entry(PENDING, record.created_at, record.media_id)
        return applied

    async def _put_upload(self, record: MediaRecord) -> None:
        await self._session.run(
            "put_upload",
            (
                record.uploader_id,
                record.created_at,
                record.media_id,
                record.size_bytes,
                record.state is State.REJECTED,
                self._quota_ttl,
            ),
        )

    # References

    async def add_reference(
        self, media_id: str, conversation_id: str, seq: int, created_at: float
    ) -> None:
        record = await self.get(media_id)
        if record is not None:
            await self._index(live_timeline(record.conversation_kind), created_at, media_id)
        await self._session.run("add_message_media", (conversation_id, seq, media_id))
        await self._session.run("add_ref", (media_id, conversation_id, seq, created_at))

    async def references(self, media_id: str) -> list[Reference]:
        rows = await self._session.run("refs", (media_id,))
        return [Reference(r.conversation_id, r.seq, bool(r.deleted)) for r in rows]

    async def delete_message(self, conversation_id: str, seq: int, now: float) -> list[str]:
        media_ids = [
            r.media_id for r in await self._session.run("message_media", (conversation_id, seq))
        ]
        gone: list[str] = []
        for media_id in media_ids:
            ref = await self._session.run("ref", (media_id, conversation_id, seq))
            if not ref or ref[0].deleted:
                continue  # deleted before (a replay), or purged
            await self._session.run("delete_ref", (media_id, conversation_id, seq))
            refs = await self._session.run("refs", (media_id,))
            if any(not r.deleted for r in refs):
                continue
            await self._index(DELETED, now, media_id)
            if await self._session.applied("mark_deleted", (now, media_id)):
                gone.append(media_id)
        return gone

    # The quota

    async def uploaded_bytes_since(self, uploader_id: str, since: float) -> int:
        rows = await self._session.run("uploads_since", (uploader_id, since))
        return sum(r.size_bytes or 0 for r in rows if not r.rejected)

    # The sweeper's queries

    async def expired_pending(self, created_before: float, limit: int) -> list[MediaRecord]:
        async def check(at: float, record: MediaRecord | None) -> bool | None:
            if record is None or record.state is not State.PENDING or record.created_at != at:
                return None
            return True

        return await self._scan(PENDING, created_before, limit, check)

    async def deleted_before(self, deleted_before: float, limit: int) -> list[MediaRecord]:
        async def check(at: float, record: MediaRecord | None) -> bool | None:
            if record is None or record.deleted_at != at:
                return None
            return True

        return await self._scan(DELETED, deleted_before, limit, check)

    async def created_before(
        self, conversation_kind: int, created_before: float, limit: int
    ) -> list[MediaRecord]:
        async def check(at: float, record: MediaRecord | None) -> bool | None:
            if (
                record is None
                or record.deleted_at is not None
                or record.conversation_kind != conversation_kind
            ):
                return None
            refs = await self._session.run("refs", (record.media_id,))
            newest = max(r.created_at for r in refs) if refs else record.created_at
            if at < newest:
                return None  # superseded by a newer reference's entry
            # An entry newer than every reference stored: a reference being stored (or to be
            # redelivered). Kept, not matched.
            return at == newest

        return await self._scan(live_timeline(conversation_kind), created_before, limit, check)

    async def _scan(
        self, timeline: str, before: float, limit: int, check: Check
    ) -> list[MediaRecord]:
        """Up to `limit` records of the timeline's entries older than `before`, oldest first.

        `check(at, record)` says True (a match), False (skip, keep the entry) or None (the entry
        is stale: delete it).
        """
        found: list[MediaRecord] = []
        if limit <= 0:
            return found
        last = bucket_of(before)
        for bucket_row in await self._session.run("buckets", (timeline, last)):
            bucket = bucket_row.bucket
            began = time.time_ns() // 1000
            seen = 0
            async with contextlib.aclosing(self._entries(timeline, bucket, before)) as pages:
                async for page in pages:
                    seen += len(page)
                    records = await self._gather(self.get(entry.media_id) for entry in page)
                    for entry, record in zip(page, records, strict=True):
                        verdict = await check(entry.at, record)
                        if verdict is None:
                            await self._drop_entry(timeline, entry.at, entry.media_id)
                        elif verdict and record is not None:
                            found.append(record)
                            if len(found) >= limit:
                                return found
            if seen == 0 and bucket < last:
                await self._session.run("drop_bucket", (began, timeline, bucket))
        return found

    def _entries(self, timeline: str, bucket: int, before: float) -> AsyncGenerator[list[Any]]:
        statement = self._session.bind(
            "entries", (timeline, bucket, before), fetch_size=self._page_size
        )
        return self._session.pages(statement)

    async def _index(self, timeline: str, at: float, media_id: str) -> None:
        # The entry, then its day: see the module docstring on dropping empty days.
        bucket = bucket_of(at)
        await self._session.run("add_entry", (timeline, bucket, at, media_id))
        await self._session.run("add_bucket", (timeline, bucket))

    async def _drop_entry(self, timeline: str, at: float, media_id: str) -> None:
        await self._session.run("drop_entry", (timeline, bucket_of(at), at, media_id))

    async def _gather(self, work: Iterable[Awaitable[T]]) -> list[T]:
        """Runs the awaitables at most `concurrency` at a time; their results in order. (Each
        call has its own limit: a purge's records each run their statements through it too.)"""
        limit = asyncio.Semaphore(self._concurrency)

        async def one(item: Awaitable[T]) -> T:
            async with limit:
                return await item

        return list(await asyncio.gather(*(one(item) for item in work)))

    # Removal

    async def purge(self, media_ids: Sequence[str]) -> None:
        await self._gather(self._purge_one(media_id) for media_id in media_ids)

    async def _purge_one(self, media_id: str) -> None:
        record = await self.get(media_id)
        refs = await self._session.run("refs", (media_id,))
        work: list[tuple[str, tuple[Any, ...]]] = [
            ("drop_message_media", (r.conversation_id, r.seq, media_id)) for r in refs
        ]
        work.append(("drop_refs", (media_id,)))
        if record is not None:
            work.append(("drop_upload", (record.uploader_id, record.created_at, media_id)))
            if record.blob_key:
                work.append(("drop_blob", (record.blob_key, media_id)))
            entries = [(PENDING, record.created_at)]
            if record.deleted_at is not None:
                entries.append((DELETED, record.deleted_at))
            live = live_timeline(record.conversation_kind)
            entries += [(live, at) for at in {record.created_at, *(r.created_at for r in refs)}]
            work += [("drop_entry", (t, bucket_of(at), at, media_id)) for t, at in entries]
        await self._gather(self._session.run(name, params) for name, params in work)
        # The record last: until it is gone a failed purge can be redone from it.
        if record is not None:
            await self._session.run("delete", (media_id,))

    async def blob_in_use(self, blob_key: str, except_media_id: str) -> bool:
        for row in await self._session.run("blob_media", (blob_key,)):
            if row.media_id == except_media_id:
                continue
            record = await self.get(row.media_id)
            if record is None or record.blob_key != blob_key:
                await self._session.run("drop_blob", (blob_key, row.media_id))
                continue
            if record.state is State.READY and record.deleted_at is None:
                return True
        return False
