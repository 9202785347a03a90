"""What the shared contract cannot show about the cluster store: several processes writing one
conversation, a writer dying after winning its seq, migrations run twice, the outbox.

Runs against a real CQL server (Cassandra standing in for ScyllaDB). Uses the session's
`cassandra_server` fixture when a conftest provides one, else starts its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from chat_service.store.base import (
    EventKind,
    HistoryDirection,
    MembershipChange,
    NotMemberError,
    Role,
    StoreError,
)
from chat_service.store.scylla import MIGRATIONS, ScyllaChatStore, migrate
from tests.servers.cassandra import CassandraServer

from .conftest import CqlBackend
from .contract import group_with, new_message, user

pytestmark = [pytest.mark.cql, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SIMPLE = {"class": "SimpleStrategy", "replication_factor": 1}


@pytest.fixture(scope="session")
def cql_server(cassandra_server: CassandraServer) -> CassandraServer:
    return cassandra_server


@pytest.fixture(scope="session")
def keyspace() -> str:
    return f"chat_specific_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def stores(cql_server: Any, keyspace: str) -> AsyncIterator[list[ScyllaChatStore]]:
    """Two store instances, each with its own driver connection pool (two "processes")."""
    backend = CqlBackend(cql_server, keyspace)
    try:
        yield [cast(ScyllaChatStore, await backend.open()) for _ in range(2)]
    finally:
        await backend.close_all()


async def test_two_instances_share_one_gapless_log(stores: list[ScyllaChatStore]) -> None:
    """Concurrent appends through two instances take 1..N once each (LWT races between them)."""
    a, b = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    results = await asyncio.gather(
        *(
            (a, b)[i % 2].append_message(new_message(cid, (alice, bob)[i % 2], f"m{i}"))
            for i in range(120)
        )
    )
    assert sorted(r.message.seq for r in results) == list(range(1, 121))
    log = await b.events_after(cid, 0, 1000)
    assert [e.seq for e in log] == list(range(1, 121))
    by_seq = {r.message.seq: r.message.message_id for r in results}
    assert all(e.message is not None and e.message.message_id == by_seq[e.seq] for e in log)


async def test_retries_through_two_instances_store_one_message(
    stores: list[ScyllaChatStore],
) -> None:
    a, b = stores
    alice = user("alice")
    cid = (await group_with(a, alice)).conversation_id
    results = await asyncio.gather(
        *(
            (a, b)[i % 2].append_message(new_message(cid, alice, client_msg_id="same"))
            for i in range(10)
        )
    )
    assert sum(not r.duplicate for r in results) == 1
    assert {(r.message.seq, r.message.message_id) for r in results} == {
        (1, results[0].message.message_id)
    }


_WRITER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    sys.path.insert(0, {tests!r})
    from chat_service.store.scylla import ScyllaChatStore
    from tests.store.contract import new_message

    async def main() -> None:
        store = ScyllaChatStore([{host!r}], port={port}, local_dc={dc!r}, keyspace={ks!r},
                                replication={{"class": "SimpleStrategy", "replication_factor": 1}})
        await store.open()
        while time.time() < {start}:
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*(
            store.append_message(new_message({cid!r}, {sender!r}, f"p{{i}}")) for i in range({n})
        ))
        print(json.dumps([r.message.seq for r in results]))
        await store.close()

    asyncio.run(main())
    """
)


async def test_writers_in_separate_processes_take_gapless_seqs(
    stores: list[ScyllaChatStore], cql_server: Any, keyspace: str
) -> None:
    """Three OS processes appending to one conversation at once: seqs 1..N, no gap, no repeat."""
    a = stores[0]
    senders = [user(f"p{i}") for i in range(3)]
    cid = (await group_with(a, senders[0], senders[1:])).conversation_id
    start = time.time() + 4
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER.format(
                tests=str(REPO),
                host=cql_server.host,
                port=cql_server.port,
                dc=cql_server.datacenter,
                ks=keyspace,
                start=start,
                cid=cid,
                sender=sender,
                n=40,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for sender in senders
    ]
    seqs: list[int] = []
    try:
        # Bounded below the test's timeout: a writer stuck on the server fails this test
        # cleanly (and is killed), rather than by pytest-timeout's signal at a random point.
        async with asyncio.timeout(90):
            for proc in procs:
                out, err = await proc.communicate()
                assert proc.returncode == 0, err.decode()[-2000:]
                seqs.extend(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert sorted(seqs) == list(range(1, 121))
    assert [e.seq for e in await a.events_after(cid, 0, 1000)] == list(range(1, 121))


async def test_a_writer_dying_after_its_lwt_is_completed_by_the_next(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seq is won but no row written (crash): readers and the next writer roll it forward."""
    a, b = stores
    alice = user("alice")
    cid = (await group_with(a, alice)).conversation_id

    async def crash(*args: Any) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(a._rounds, "_materialize", crash)
    lost = new_message(cid, alice, "sent before the crash", client_msg_id="k-crash")
    with pytest.raises(RuntimeError):
        await a.append_message(lost)
    # A reader completes it (here: of the log; any read path does, see the next test).
    [event] = await b.events_after(cid, 0, 10)
    assert event.message is not None and event.message.body == "sent before the crash"
    # A retry of the key answers with it; the next write follows it without a gap.
    retry = await b.append_message(new_message(cid, alice, "again", client_msg_id="k-crash"))
    assert retry.duplicate and retry.message.message_id == lost.message_id
    after = await b.append_message(new_message(cid, alice, "after"))
    assert after.message.seq == 2


async def test_readers_see_a_crashed_writers_round_at_once(
    cql_server: Any, keyspace: str, stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seq is won, no row written, and nothing else is written afterwards: history,
    get_message and count_unread of a fresh instance show the committed message at once."""
    a, _ = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    first = await a.append_message(new_message(cid, alice, "before"))
    edited = await a.append_message(new_message(cid, alice, "to be edited"))

    async def crash(*args: Any) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(a._rounds, "_materialize", crash)
    lost = new_message(cid, alice, "sent before the crash", client_msg_id="k-lost")
    with pytest.raises(RuntimeError):
        await a.append_message(lost)

    async def fresh() -> ScyllaChatStore:
        store = ScyllaChatStore(
            [cql_server.host],
            port=cql_server.port,
            local_dc=cql_server.datacenter,
            keyspace=keyspace,
            replication=SIMPLE,
        )
        await store.open()
        return store

    # Each read path on its own fresh instance (none knows the head; no write in between).
    readers = [await fresh() for _ in range(4)]
    try:
        r1, r2, r3, r4 = readers
        newest = await r1.history(cid, 0, 0, 10)
        assert [(m.seq, m.body) for m in newest] == [
            (3, "sent before the crash"),
            (2, "to be edited"),
            (1, "before"),
        ]
        message = await r2.get_message(cid, 3)
        assert message is not None and message.message_id == lost.message_id
        assert await r3.count_unread(cid, bob, 0) == 3
        oldest = await r4.history(cid, 0, first.message.seq, 10, HistoryDirection.FORWARD)
        assert [m.seq for m in oldest] == [2, 3]
        # The same for an edit lost in a crash: the committed body, not the old one.
        with pytest.raises(RuntimeError):
            await a.edit_message(cid, edited.message.seq, alice, "edited", time.time())
        r5 = await fresh()
        readers.append(r5)
        current = await r5.get_message(cid, edited.message.seq)
        assert current is not None and (current.body, current.version) == ("edited", 2)
        r6 = await fresh()
        readers.append(r6)
        assert [(m.seq, m.body) for m in await r6.history(cid, 0, 0, 2)] == [
            (3, "sent before the crash"),
            (2, "edited"),
        ]
    finally:
        for store in readers:
            await store.close()


async def test_membership_change_lost_in_a_crash_is_rolled_forward(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    alice, carol = user("alice"), user("carol")
    cid = (await group_with(a, alice)).conversation_id

    async def crash(*args: Any) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(a._rounds, "_materialize", crash)
    with pytest.raises(RuntimeError):
        await a.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.ADMIN)], time.time()
        )
    # carol's first send must see her membership: the round rolls seq 1 forward first.
    sent = await b.append_message(new_message(cid, carol, "hi"))
    assert sent.message.seq == 2
    member = await b.get_member(cid, carol)
    assert member is not None and member.role == Role.ADMIN


async def test_non_members_cannot_write(stores: list[ScyllaChatStore]) -> None:
    a, _ = stores
    alice, mallory = user("alice"), user("mallory")
    cid = (await group_with(a, alice)).conversation_id
    await a.append_message(new_message(cid, alice))
    with pytest.raises(NotMemberError):
        await a.append_message(new_message(cid, mallory))
    with pytest.raises(NotMemberError):
        await a.edit_message(cid, 1, mallory, "x", time.time())
    conversation = await a.get_conversation(cid)
    assert conversation is not None and conversation.last_seq == 1


async def test_outbox_follows_writes_and_clears(stores: list[ScyllaChatStore]) -> None:
    a, b = stores
    alice = user("alice")
    cid = (await group_with(a, alice)).conversation_id
    assert await a.outbox_entry(cid) is None
    await a.append_message(new_message(cid, alice))
    entry = await b.outbox_entry(cid)
    assert entry is not None and (entry.from_seq, entry.up_to_seq) == (1, 1)
    await a.append_message(new_message(cid, alice))
    await a.edit_message(cid, 1, alice, "edited", time.time())
    entry = await b.outbox_entry(cid)
    assert entry is not None and (entry.from_seq, entry.up_to_seq) == (1, 3)
    assert cid in {e.conversation_id for e in await b.pending_outbox(10_000)}
    await b.clear_outbox([(cid, 2)])
    entry = await a.outbox_entry(cid)
    assert entry is not None and (entry.from_seq, entry.up_to_seq) == (3, 3)
    await b.clear_outbox([(cid, 1)])  # late, lower confirmation: never lowers
    entry = await a.outbox_entry(cid)
    assert entry is not None and entry.from_seq == 3
    await b.clear_outbox([(cid, 3)])
    assert await a.outbox_entry(cid) is None
    assert cid not in {e.conversation_id for e in await b.pending_outbox(10_000)}


async def test_unknown_conversation_is_refused(stores: list[ScyllaChatStore]) -> None:
    with pytest.raises(StoreError):
        await stores[0].change_members(
            "no-such-conversation", "x", [MembershipChange("y", EventKind.MEMBER_ADDED)], 0.0
        )


def test_migrate_is_safe_twice_and_concurrently(cql_server: Any) -> None:
    """Two racing migrators and a third later: each migration runs once, all see it done."""
    from cassandra.cluster import Cluster

    ks = f"chat_migrate_{uuid.uuid4().hex[:10]}"
    cluster = Cluster([cql_server.host], port=cql_server.port, protocol_version=4)
    session = cluster.connect()
    try:
        ran: list[list[int]] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                ran.append(migrate(session, ks, SIMPLE))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(v for r in ran for v in r) == [m.version for m in MIGRATIONS]
        assert migrate(session, ks, SIMPLE) == []
        rows = session.execute(f"SELECT version, state FROM {ks}.schema_migrations")
        assert sorted((r.version, r.state) for r in rows) == [
            (m.version, "done") for m in MIGRATIONS
        ]
    finally:
        cluster.shutdown()


def test_migration_adding_a_column_can_be_redone(cql_server: Any) -> None:
    """A migrator that takes over a half-done `ALTER TABLE ... ADD` finds the column there: the
    migration still completes (ALTER has no IF NOT EXISTS on every server)."""
    from cassandra.cluster import Cluster

    ks = f"chat_migrate_{uuid.uuid4().hex[:10]}"
    cluster = Cluster([cql_server.host], port=cql_server.port, protocol_version=4)
    session = cluster.connect()
    try:
        assert migrate(session, ks, SIMPLE) == [m.version for m in MIGRATIONS]
        last = MIGRATIONS[-1].version
        session.execute(f"DELETE FROM {ks}.schema_migrations WHERE version = {last}")
        assert migrate(session, ks, SIMPLE) == [last]
        columns = session.execute(
            "SELECT column_name FROM system_schema.columns"
            f" WHERE keyspace_name = '{ks}' AND table_name = 'conversations'"
        )
        assert "first_seq" in {r.column_name for r in columns}
    finally:
        cluster.shutdown()
