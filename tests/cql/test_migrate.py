"""`chatmesh migrate` against a real CQL server: run twice, and from two processes at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chatmesh.chat.v1 import types_pb2

from chat_service.store.scylla import CONVERSATIONS_GC_GRACE_SECONDS, MIGRATIONS
from tests.chat.support import Client
from tests.servers.cassandra import CassandraServer

from .conftest import StartReplica
from .support import cql_session, run_migrate

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

TABLES = {
    "schema_migrations",
    "conversations",
    "direct_conversations",
    "members",
    "member_prefs",
    "user_conversations",
    "messages",
    "events",
    "blocks",
    "outbox_index",
    "outbox_relayed",
    "reports",
    "report_keys",
    "report_queue",
    "bans",
    "suspensions",
    "messages_by_id",
    "held_messages",
    "held_keys",
    "held_queue",
}


def _schema(server: CassandraServer, keyspace: str) -> dict[str, Any]:
    with cql_session(server) as session:
        tables = {
            r.table_name: r.gc_grace_seconds
            for r in session.execute(
                "SELECT table_name, gc_grace_seconds FROM system_schema.tables"
                " WHERE keyspace_name = %s",
                (keyspace,),
            )
        }
        migrations = {
            r.version: (r.state, r.owner, r.applied_at)
            for r in session.execute(
                f"SELECT version, state, owner, applied_at FROM {keyspace}.schema_migrations"
            )
        }
    return {"tables": tables, "migrations": migrations}


def _assert_one_correct_schema(server: CassandraServer, keyspace: str) -> None:
    schema = _schema(server, keyspace)
    assert set(schema["tables"]) == TABLES
    assert schema["tables"]["conversations"] == CONVERSATIONS_GC_GRACE_SECONDS
    migrations = schema["migrations"]
    assert set(migrations) == {m.version for m in MIGRATIONS}
    for version, (state, owner, applied_at) in migrations.items():
        assert state == "done", f"migration {version} is {state}"
        assert owner and applied_at, f"migration {version}: owner {owner!r}, at {applied_at!r}"


async def _serves(start_replica: StartReplica) -> None:
    replica = await start_replica()
    alice, bob = Client(replica, "alice"), Client(replica, "bob")
    cid = await alice.group(bob)
    sent = await bob.send(cid, "after migrate")
    assert sent.message.seq == 1
    assert [m.body for m in await alice.all_messages(cid)] == ["after migrate"]
    conversation = await alice.conversation(cid)
    assert conversation.conversation.kind == types_pb2.CONVERSATION_KIND_GROUP


async def test_migrate_twice_in_a_row_leaves_one_schema(
    cassandra_server: CassandraServer, keyspace_env: dict[str, str], start_replica: StartReplica
) -> None:
    """Two `chatmesh migrate` runs one after the other: the second is a no-op, a replica serves."""
    keyspace = keyspace_env["CHATMESH_SCYLLA_KEYSPACE"]
    first = await run_migrate(keyspace_env)
    assert first.returncode == 0, first.output
    assert f"keyspace {keyspace}" in first.output
    before = await asyncio.to_thread(_schema, cassandra_server, keyspace)
    second = await run_migrate(keyspace_env)
    assert second.returncode == 0, second.output
    after = await asyncio.to_thread(_schema, cassandra_server, keyspace)
    # The second run claimed nothing: same owners, same applied_at.
    assert after == before
    await asyncio.to_thread(_assert_one_correct_schema, cassandra_server, keyspace)
    await _serves(start_replica)


async def test_migrate_from_two_processes_at_once_leaves_one_schema(
    cassandra_server: CassandraServer, keyspace_env: dict[str, str], start_replica: StartReplica
) -> None:
    """Two `chatmesh migrate` processes racing on an empty keyspace both succeed, one schema."""
    keyspace = keyspace_env["CHATMESH_SCYLLA_KEYSPACE"]
    results = await asyncio.gather(run_migrate(keyspace_env), run_migrate(keyspace_env))
    for result in results:
        assert result.returncode == 0, result.output
    await asyncio.to_thread(_assert_one_correct_schema, cassandra_server, keyspace)
    await _serves(start_replica)


async def test_migrate_refuses_more_replicas_than_nodes_before_creating_anything(
    cassandra_server: CassandraServer, keyspace_env: dict[str, str]
) -> None:
    """Three replicas on a one-node cluster: one clear line, exit 2, no keyspace; fixed, it runs."""
    keyspace = keyspace_env["CHATMESH_SCYLLA_KEYSPACE"]
    dc = cassandra_server.datacenter
    too_many = {
        **keyspace_env,
        "CHATMESH_SCYLLA_REPLICATION": f"NetworkTopologyStrategy:{dc}=3",
    }
    refused = await run_migrate(too_many)
    assert refused.returncode == 2, refused.output
    assert "Traceback" not in refused.output
    line = refused.output.strip().splitlines()[-1]
    assert "3 replicas" in line and "nothing was created" in line, refused.output
    assert f"CHATMESH_SCYLLA_REPLICATION=NetworkTopologyStrategy:{dc}=1" in line
    schema = await asyncio.to_thread(_schema_or_none, cassandra_server, keyspace)
    assert schema is None, f"keyspace {keyspace} was created: {schema}"
    fixed = {**keyspace_env, "CHATMESH_SCYLLA_REPLICATION": f"NetworkTopologyStrategy:{dc}=1"}
    again = await run_migrate(fixed)
    assert again.returncode == 0, again.output
    await asyncio.to_thread(_assert_one_correct_schema, cassandra_server, keyspace)


def _schema_or_none(server: CassandraServer, keyspace: str) -> list[str] | None:
    with cql_session(server) as session:
        rows = list(
            session.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (keyspace,),
            )
        )
    return [r.keyspace_name for r in rows] or None


async def test_migrate_with_the_default_replication_on_one_node_refuses_before_creating_anything(
    cassandra_server: CassandraServer, keyspace_env: dict[str, str]
) -> None:
    """Unset replication (three replicas) on one node: one line naming the fix, no keyspace."""
    keyspace = keyspace_env["CHATMESH_SCYLLA_KEYSPACE"]
    default = {k: v for k, v in keyspace_env.items() if k != "CHATMESH_SCYLLA_REPLICATION"}
    refused = await run_migrate(default)
    assert refused.returncode == 2, refused.output
    [line] = refused.output.strip().splitlines()
    assert line.startswith("chatmesh: migrate: CHATMESH_SCYLLA_REPLICATION: "), line
    assert await asyncio.to_thread(_schema_or_none, cassandra_server, keyspace) is None


def _half_made(server: CassandraServer, keyspace: str) -> None:
    """What a migrate of an earlier version left on one node: a keyspace asking three replicas
    and an empty migrations table (every LOCAL_QUORUM statement after them failed)."""
    with cql_session(server) as session:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication ="
            f" {{'class': 'NetworkTopologyStrategy', '{server.datacenter}': 3}}"
        )
        session.execute(
            f"CREATE TABLE {keyspace}.schema_migrations (version int PRIMARY KEY,"
            " description text, state text, owner text, claimed_at double, applied_at double)"
        )


def _replication(server: CassandraServer, keyspace: str) -> dict[str, str]:
    with cql_session(server) as session:
        row = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (keyspace,),
        ).one()
    return dict(row.replication)


async def test_migrate_finishes_a_keyspace_left_half_made_with_too_many_replicas(
    cassandra_server: CassandraServer, keyspace_env: dict[str, str]
) -> None:
    """A keyspace asking more replicas than nodes: refused in one line while the setting asks
    as many; with a setting that fits, migrate moves the keyspace to it and finishes."""
    keyspace = keyspace_env["CHATMESH_SCYLLA_KEYSPACE"]
    dc = cassandra_server.datacenter
    await asyncio.to_thread(_half_made, cassandra_server, keyspace)
    still = {**keyspace_env, "CHATMESH_SCYLLA_REPLICATION": f"NetworkTopologyStrategy:{dc}=3"}
    refused = await run_migrate(still)
    assert refused.returncode == 2, refused.output
    # One line says what is wrong; under load the CQL driver may log a warning of its own
    # (a slow or reconnecting node) beside it.
    lines = [x for x in refused.output.splitlines() if "CHATMESH_SCYLLA_REPLICATION" in x]
    assert len(lines) == 1 and f"keyspace {keyspace}" in lines[0], refused.output
    assert "Traceback" not in refused.output, refused.output
    fixed = {**keyspace_env, "CHATMESH_SCYLLA_REPLICATION": f"NetworkTopologyStrategy:{dc}=1"}
    again = await run_migrate(fixed)
    assert again.returncode == 0, again.output
    replication = await asyncio.to_thread(_replication, cassandra_server, keyspace)
    assert replication[dc] == "1", replication
    await asyncio.to_thread(_assert_one_correct_schema, cassandra_server, keyspace)
