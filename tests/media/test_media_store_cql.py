"""What the cluster media store does beyond the contract: migrations run once, and the time
indexes tidy themselves (stale entries and empty days go) without changing any answer."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from media_service.store.base import MediaRecord, State
from media_service.store.cql import CqlMediaStore, bucket_of
from media_service.store.cql_schema import MIGRATIONS
from tests.servers.cassandra import CassandraServer

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

DAY = 86400.0
GROUP = 1


def build(server: CassandraServer, keyspace: str) -> CqlMediaStore:
    return CqlMediaStore(
        [server.host],
        port=server.port,
        local_dc=server.datacenter,
        keyspace=keyspace,
        replication={"class": "SimpleStrategy", "replication_factor": 1},
        page_size=2,
    )


@pytest.fixture
async def store(cassandra_server: CassandraServer) -> AsyncIterator[CqlMediaStore]:
    """A store on a keyspace of its own: these tests look at whole tables."""
    built = build(cassandra_server, f"media_cql_{uuid.uuid4().hex[:12]}")
    await built.open()
    try:
        yield built
    finally:
        await built.close()


def pending(created_at: float) -> MediaRecord:
    return MediaRecord(
        media_id=f"m-{uuid.uuid4().hex[:10]}",
        conversation_id="c1",
        conversation_kind=GROUP,
        uploader_id="u1",
        state=State.PENDING,
        file_name="a.bin",
        content_type="application/octet-stream",
        size_bytes=10,
        created_at=created_at,
    )


async def timeline(store: CqlMediaStore, name: str, at: float) -> list[tuple[float, str]]:
    rows = await store._session.run("entries", (name, bucket_of(at), at + 1))
    return [(r.at, r.media_id) for r in rows]


async def buckets(store: CqlMediaStore, name: str) -> list[int]:
    return [r.bucket for r in await store._session.run("buckets", (name, 2**40))]


async def test_migrations_are_recorded_and_not_run_twice(
    store: CqlMediaStore, cassandra_server: CassandraServer
) -> None:
    from media_service.store.cql_schema import migrate

    ks = store._keyspace
    again = build(cassandra_server, ks)
    await again.open()
    await again.close()
    cluster_session = store._session._session
    assert migrate(cluster_session, ks, {"class": "SimpleStrategy", "replication_factor": 1}) == []
    rows = cluster_session.execute(f"SELECT version, state FROM {ks}.media_schema_migrations")
    assert sorted((r.version, r.state) for r in rows) == [(m.version, "done") for m in MIGRATIONS]


async def test_completed_upload_leaves_the_pending_timeline(store: CqlMediaStore) -> None:
    t = 1.0e9
    record = pending(t)
    await store.create(record)
    assert await timeline(store, "pending", t) == [(t, record.media_id)]
    done = dataclasses.replace(record, state=State.READY, blob_key="b1")
    assert await store.update(done, expect=State.PENDING)
    assert await timeline(store, "pending", t) == []


async def test_reads_drop_stale_entries_and_empty_days(store: CqlMediaStore) -> None:
    t = 1.0e9
    record = pending(t)
    await store.create(record)
    await store.add_reference(record.media_id, "c1", 1, t + 1 * DAY)
    await store.add_reference(record.media_id, "c1", 2, t + 3 * DAY)
    live = f"live:{GROUP}"
    assert len(await buckets(store, live)) == 3

    # Superseded by the newest reference: the older entries are dropped, then their empty days.
    assert await store.created_before(GROUP, t + 2 * DAY, 10) == []
    assert await timeline(store, live, t) == []
    assert await timeline(store, live, t + DAY) == []
    assert await store.created_before(GROUP, t + 2 * DAY, 10) == []
    assert await buckets(store, live) == [bucket_of(t + 3 * DAY)]
    [found] = await store.created_before(GROUP, t + 4 * DAY, 10)
    assert found.media_id == record.media_id

    # An entry of a record that is gone is dropped by the next read.
    await store._session.run("drop_bucket", (0, live, bucket_of(t)))
    await store._index(live, t, "m-gone")
    assert await store.created_before(GROUP, t + 0.5 * DAY, 10) == []
    assert await timeline(store, live, t) == []


async def test_a_day_written_while_it_is_dropped_stays(store: CqlMediaStore) -> None:
    # The drop is timestamped when the read began: a later write of the day wins.
    t = 1.0e9
    await store._session.run("drop_bucket", (1, "pending", bucket_of(t)))
    record = pending(t)
    await store.create(record)
    await store._session.run("drop_bucket", (1, "pending", bucket_of(t)))
    assert await buckets(store, "pending") == [bucket_of(t)]
    assert [r.media_id for r in await store.expired_pending(t + 1, 10)] == [record.media_id]


async def test_more_replicas_than_nodes_is_refused_before_the_keyspace_is_made(
    cassandra_server: CassandraServer,
) -> None:
    """Three replicas on a one-node cluster: a ReplicationError naming the setting, no keyspace."""
    from chatmesh_common.cql_replication import ReplicationError

    keyspace = f"media_cql_{uuid.uuid4().hex[:12]}"
    too_many = CqlMediaStore(
        [cassandra_server.host],
        port=cassandra_server.port,
        local_dc=cassandra_server.datacenter,
        keyspace=keyspace,
    )
    with pytest.raises(ReplicationError, match="CHATMESH_SCYLLA_REPLICATION: 3 replicas"):
        await too_many.open()
    await too_many.close()
    fits = build(cassandra_server, keyspace)
    await fits.open()
    try:
        assert keyspace in fits._session._session.cluster.metadata.keyspaces
    finally:
        await fits.close()
