"""The MediaStore contract: what media_service (media.py, binder.py, sweeper.py) relies on from any
media record store, run on each of them through the `store` fixture's params.

Every test uses fresh media, user and conversation ids, and its own span of time (`t0`): each
test's times lie below those of every test before it, so a backend whose storage outlives one
test (a CQL keyspace shared by the session) answers the time queries with this test's data only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from media_service.store.base import MediaRecord, MediaStore, Reference, State
from media_service.store.sqlite import SqliteMediaStore
from tests.servers.cassandra import CassandraServer

pytestmark = pytest.mark.timeout(60)

GROUP, DIRECT, CHANNEL = 1, 2, 3
DAY = 86400.0

_spans = itertools.count(1)


@pytest.fixture(scope="session")
def media_cql_keyspace() -> str:
    return f"media_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", pytest.param("cql", marks=pytest.mark.cql)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    """An opened store on fresh storage (sqlite) or the session's keyspace (cql)."""
    built: MediaStore
    if request.param == "sqlite":
        built = SqliteMediaStore(str(tmp_path / "media.sqlite3"))
    else:
        from media_service.store.cql import CqlMediaStore

        server: CassandraServer = request.getfixturevalue("cassandra_server")
        built = CqlMediaStore(
            [server.host],
            port=server.port,
            local_dc=server.datacenter,
            keyspace=request.getfixturevalue("media_cql_keyspace"),
            replication={"class": "SimpleStrategy", "replication_factor": 1},
            page_size=3,  # small pages: the time queries cross page boundaries
        )
    await built.open()
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
def t0() -> float:
    """The start of this test's own span of time, 100 days below the previous test's."""
    return 1.9e9 - next(_spans) * 100 * DAY


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def pending(
    created_at: float,
    *,
    uploader: str = "",
    conversation: str = "",
    kind: int = GROUP,
    size: int = 100,
) -> MediaRecord:
    return MediaRecord(
        media_id=uid("m"),
        conversation_id=conversation or uid("c"),
        conversation_kind=kind,
        uploader_id=uploader or uid("u"),
        state=State.PENDING,
        file_name="cat.png",
        content_type="image/png",
        size_bytes=size,
        created_at=created_at,
    )


def ready(record: MediaRecord, *, blob_key: str = "", size: int | None = None) -> MediaRecord:
    return dataclasses.replace(
        record,
        state=State.READY,
        content_type="image/webp",
        size_bytes=record.size_bytes if size is None else size,
        blob_key=blob_key or uid("blob"),
        sha256="ab" * 32,
        width=640,
        height=480,
        blurhash="LEHV6nWB2yk8",
        thumbnails={"small": uid("thumb"), "large": uid("thumb")},
    )


def rejected(record: MediaRecord) -> MediaRecord:
    return dataclasses.replace(
        record, state=State.REJECTED, reject_reason="malware", reject_detail="EICAR"
    )


async def created(store: MediaStore, *records: MediaRecord) -> list[MediaRecord]:
    for record in records:
        await store.create(record)
    return list(records)


def ids(records: list[MediaRecord]) -> list[str]:
    return sorted(r.media_id for r in records)


# create / get


async def test_create_then_get_returns_the_record(store: MediaStore, t0: float) -> None:
    record = pending(t0)
    await store.create(record)
    assert await store.get(record.media_id) == record
    assert await store.get(uid("missing")) is None


async def test_create_refuses_an_existing_id(store: MediaStore, t0: float) -> None:
    record = pending(t0)
    await store.create(record)
    with pytest.raises(ValueError):
        await store.create(dataclasses.replace(record, file_name="other.png"))
    with pytest.raises(ValueError):
        await store.create(dataclasses.replace(record, created_at=t0 + 5))
    assert await store.get(record.media_id) == record
    assert await store.expired_pending(t0 + 10, 10) == [record]
    assert await store.created_before(record.conversation_kind, t0 + 10, 10) == [record]


# update (compare-and-set)


async def test_update_replaces_every_field(store: MediaStore, t0: float) -> None:
    [record] = await created(store, pending(t0))
    done = ready(record, size=77)
    assert await store.update(done, expect=State.PENDING)
    assert await store.get(record.media_id) == done


async def test_update_is_a_compare_and_set_on_the_state(store: MediaStore, t0: float) -> None:
    [record] = await created(store, pending(t0))
    first = ready(record)
    assert await store.update(first, expect=State.PENDING)
    # A second CompleteUpload that read the record while it was still pending loses.
    assert not await store.update(rejected(record), expect=State.PENDING)
    assert await store.get(record.media_id) == first
    assert not await store.update(pending(t0), expect=State.PENDING)  # no such record
    assert await store.get(pending(t0).media_id) is None


async def test_concurrent_updates_expecting_pending_one_wins(store: MediaStore, t0: float) -> None:
    [record] = await created(store, pending(t0))
    outcomes = [ready(record, size=1), ready(record, size=2), rejected(record)]
    won = await asyncio.gather(*(store.update(o, expect=State.PENDING) for o in outcomes))
    assert sorted(won) == [False, False, True]
    assert await store.get(record.media_id) == outcomes[won.index(True)]


async def test_update_with_the_current_state_expected_applies(store: MediaStore, t0: float) -> None:
    [record] = await created(store, pending(t0))
    first = ready(record)
    assert await store.update(first, expect=State.PENDING)
    again = dataclasses.replace(first, thumbnails={"small": "only-one"})
    assert await store.update(again, expect=State.READY)
    assert (await store.get(record.media_id)) == again


# references


async def test_add_reference_is_idempotent_and_references_list_them(
    store: MediaStore, t0: float
) -> None:
    [record] = await created(store, pending(t0))
    conv_b, conv_a = "b-" + uid("c"), "a-" + uid("c")
    for _ in range(2):
        await store.add_reference(record.media_id, conv_b, 5, t0 + 10)
        await store.add_reference(record.media_id, conv_a, 9, t0 + 11)
        await store.add_reference(record.media_id, conv_a, 2, t0 + 12)
    refs = await store.references(record.media_id)
    assert sorted(refs, key=lambda r: (r.conversation_id, r.seq)) == [
        Reference(conv_a, 2),
        Reference(conv_a, 9),
        Reference(conv_b, 5),
    ]
    assert await store.references(uid("missing")) == []


async def test_delete_message_deletes_media_left_without_live_reference(
    store: MediaStore, t0: float
) -> None:
    shared, alone = await created(store, pending(t0), pending(t0 + 1))
    conv = uid("c")
    await store.add_reference(shared.media_id, conv, 1, t0 + 10)
    await store.add_reference(alone.media_id, conv, 1, t0 + 10)
    await store.add_reference(shared.media_id, conv, 2, t0 + 20)  # forwarded in another message

    assert await store.delete_message(conv, 1, t0 + 100) == [alone.media_id]
    alone_now = await store.get(alone.media_id)
    assert alone_now is not None and alone_now.deleted_at == t0 + 100
    shared_now = await store.get(shared.media_id)
    assert shared_now is not None and shared_now.deleted_at is None
    assert sorted(await store.references(shared.media_id), key=lambda r: r.seq) == [
        Reference(conv, 1, deleted=True),
        Reference(conv, 2),
    ]

    assert await store.delete_message(conv, 2, t0 + 200) == [shared.media_id]
    shared_now = await store.get(shared.media_id)
    assert shared_now is not None and shared_now.deleted_at == t0 + 200


async def test_delete_message_replayed_changes_nothing(store: MediaStore, t0: float) -> None:
    [record] = await created(store, pending(t0))
    conv = uid("c")
    await store.add_reference(record.media_id, conv, 1, t0 + 10)
    assert await store.delete_message(conv, 1, t0 + 100) == [record.media_id]
    assert await store.delete_message(conv, 1, t0 + 300) == []
    # A redelivered create of the deleted message does not bring the reference back.
    await store.add_reference(record.media_id, conv, 1, t0 + 10)
    assert await store.references(record.media_id) == [Reference(conv, 1, deleted=True)]
    again = await store.get(record.media_id)
    assert again is not None and again.deleted_at == t0 + 100
    assert await store.delete_message(uid("c"), 1, t0 + 300) == []  # attached nothing
    # A message attaching an id no record has leaves no record behind when deleted.
    unknown = uid("m")
    await store.add_reference(unknown, conv, 7, t0 + 10)
    await store.delete_message(conv, 7, t0 + 300)
    assert await store.get(unknown) is None


# the quota


async def test_uploaded_bytes_since_sums_the_uploaders_recent_media(
    store: MediaStore, t0: float
) -> None:
    user = uid("u")
    _old, shrunk, refused, _waiting = await created(
        store,
        pending(t0, uploader=user, size=1000),
        pending(t0 + 10, uploader=user, size=200),
        pending(t0 + 20, uploader=user, size=4000),
        pending(t0 + 30, uploader=user, size=30),
    )
    await created(store, pending(t0 + 40, size=5000))  # another uploader
    assert await store.update(ready(shrunk, size=150), expect=State.PENDING)
    assert await store.update(rejected(refused), expect=State.PENDING)
    assert await store.uploaded_bytes_since(user, t0 + 10) == 150 + 30
    assert await store.uploaded_bytes_since(user, t0) == 1000 + 150 + 30
    assert await store.uploaded_bytes_since(user, t0 + 31) == 0
    assert await store.uploaded_bytes_since(uid("u"), t0) == 0


# the sweeper's queries


async def test_expired_pending_lists_old_pending_uploads(store: MediaStore, t0: float) -> None:
    # Spread over days, so the cluster store's day partitions are crossed too.
    old = await created(store, *(pending(t0 + i * 0.4 * DAY) for i in range(7)))
    completed, refused = old[1], old[4]
    await created(store, pending(t0 + 10 * DAY))  # not expired yet
    assert await store.update(ready(completed), expect=State.PENDING)
    assert await store.update(rejected(refused), expect=State.PENDING)
    waiting = [r for r in old if r not in (completed, refused)]

    assert ids(await store.expired_pending(t0 + 5 * DAY, 100)) == ids(waiting)
    assert ids(await store.expired_pending(t0 + 0.5 * DAY, 100)) == ids(waiting[:1])
    assert await store.expired_pending(t0, 100) == []
    some = await store.expired_pending(t0 + 5 * DAY, 3)
    assert len(some) == 3 and set(ids(some)) <= set(ids(waiting))


async def test_deleted_before_lists_media_deleted_before_the_time(
    store: MediaStore, t0: float
) -> None:
    records = await created(store, *(pending(t0 + i) for i in range(5)))
    conv = uid("c")
    for seq, record in enumerate(records, start=1):
        await store.add_reference(record.media_id, conv, seq, t0 + 10)
        await store.delete_message(conv, seq, t0 + seq * 0.7 * DAY)
    await created(store, pending(t0 + 100))  # never deleted

    found = await store.deleted_before(t0 + 3 * DAY, 100)
    assert ids(found) == ids(records[:4])
    assert all(r.deleted_at is not None and r.deleted_at < t0 + 3 * DAY for r in found)
    assert await store.deleted_before(t0 + 0.7 * DAY, 100) == []
    assert len(await store.deleted_before(t0 + 10 * DAY, 2)) == 2


async def test_created_before_uses_the_newest_reference_or_the_upload_time(
    store: MediaStore, t0: float
) -> None:
    never_sent, sent_early, sent_late, forwarded, other_kind, gone = await created(
        store,
        pending(t0, kind=CHANNEL),
        pending(t0 + 1, kind=CHANNEL),
        pending(t0 + 2, kind=CHANNEL),
        pending(t0 + 3, kind=CHANNEL),
        pending(t0 + 4, kind=DIRECT),
        pending(t0 + 5, kind=CHANNEL),
    )
    conv = uid("c")
    await store.add_reference(sent_early.media_id, conv, 1, t0 + 1 * DAY)
    await store.add_reference(sent_late.media_id, conv, 2, t0 + 5 * DAY)
    await store.add_reference(forwarded.media_id, conv, 3, t0 + 1 * DAY)
    await store.add_reference(forwarded.media_id, uid("c"), 1, t0 + 6 * DAY)
    await store.add_reference(other_kind.media_id, conv, 4, t0 + 1 * DAY)
    await store.add_reference(gone.media_id, conv, 5, t0 + 1 * DAY)
    await store.delete_message(conv, 5, t0 + 2 * DAY)

    assert ids(await store.created_before(CHANNEL, t0 + 2 * DAY, 100)) == ids(
        [never_sent, sent_early]
    )
    assert ids(await store.created_before(CHANNEL, t0 + 5.5 * DAY, 100)) == ids(
        [never_sent, sent_early, sent_late]
    )
    assert ids(await store.created_before(CHANNEL, t0 + 7 * DAY, 100)) == ids(
        [never_sent, sent_early, sent_late, forwarded]
    )
    assert ids(await store.created_before(DIRECT, t0 + 7 * DAY, 100)) == ids([other_kind])
    assert await store.created_before(GROUP, t0 + 7 * DAY, 100) == []
    assert await store.created_before(CHANNEL, t0, 100) == []
    assert len(await store.created_before(CHANNEL, t0 + 7 * DAY, 2)) == 2
    # Asked again, the answer is the same (whatever a read tidied up stays correct).
    assert ids(await store.created_before(CHANNEL, t0 + 7 * DAY, 100)) == ids(
        [never_sent, sent_early, sent_late, forwarded]
    )


async def test_purge_forgets_records_and_references(store: MediaStore, t0: float) -> None:
    user = uid("u")
    doomed, kept = await created(
        store, pending(t0, uploader=user, size=10), pending(t0 + 1, uploader=user, size=20)
    )
    blob = uid("blob")
    assert await store.update(ready(doomed, blob_key=blob), expect=State.PENDING)
    assert await store.update(ready(kept, blob_key=blob), expect=State.PENDING)
    conv = uid("c")
    await store.add_reference(doomed.media_id, conv, 1, t0 + 10)
    await store.add_reference(kept.media_id, conv, 1, t0 + 10)
    await store.delete_message(conv, 1, t0 + 20)

    await store.purge([doomed.media_id, uid("missing")])
    assert await store.get(doomed.media_id) is None
    assert await store.references(doomed.media_id) == []
    assert ids(await store.deleted_before(t0 + DAY, 100)) == ids([kept])
    assert ids(await store.created_before(GROUP, t0 + DAY, 100)) == []
    assert await store.uploaded_bytes_since(user, t0) == 20
    assert not await store.blob_in_use(blob, kept.media_id)
    # The message's other media is untouched.
    assert await store.references(kept.media_id) == [Reference(conv, 1, deleted=True)]
    await store.purge([kept.media_id])
    assert await store.deleted_before(t0 + DAY, 100) == []


async def test_purge_of_pending_media_removes_it_from_expired_pending(
    store: MediaStore, t0: float
) -> None:
    abandoned = await created(store, pending(t0), pending(t0 + 1))
    assert ids(await store.expired_pending(t0 + DAY, 100)) == ids(abandoned)
    await store.purge([r.media_id for r in abandoned])
    assert await store.expired_pending(t0 + DAY, 100) == []
    assert await store.created_before(GROUP, t0 + DAY, 100) == []


async def test_blob_in_use_by_another_live_ready_record(store: MediaStore, t0: float) -> None:
    first, duplicate, waiting = await created(store, pending(t0), pending(t0 + 1), pending(t0 + 2))
    blob = uid("blob")
    assert await store.update(ready(first, blob_key=blob), expect=State.PENDING)
    assert not await store.blob_in_use(blob, first.media_id)  # only itself
    assert await store.update(ready(duplicate, blob_key=blob), expect=State.PENDING)
    assert await store.blob_in_use(blob, first.media_id)
    assert await store.blob_in_use(blob, duplicate.media_id)
    assert not await store.blob_in_use(uid("blob"), first.media_id)
    # A pending record naming the blob does not keep it.
    assert await store.update(dataclasses.replace(waiting, blob_key=blob), expect=State.PENDING)
    conv = uid("c")
    await store.add_reference(duplicate.media_id, conv, 1, t0 + 10)
    await store.delete_message(conv, 1, t0 + 20)
    # Deleted, the duplicate no longer keeps the blob.
    assert not await store.blob_in_use(blob, first.media_id)
    assert await store.blob_in_use(blob, duplicate.media_id)
