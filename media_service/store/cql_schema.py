"""The CQL schema of the cluster media store and its numbered migrations.

Migrations are recorded in `<keyspace>.media_schema_migrations` (its own name, so the media
tables may share a keyspace with chat_service's). `migrate()` is safe to run twice and from
several processes at once: each migration is claimed with an LWT (`INSERT ... IF NOT EXISTS` on
its row), only the claimer runs its DDL (every statement is `CREATE ... IF NOT EXISTS`, so a
claimer that died half-way can be redone), and the others wait for the row to say `done`. A claim
older than `stale_after` seconds is taken over (LWT on the owner).

The tables and why they look like this are described in media_service/store/cql.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatmesh_common.cql_replication import ensure_keyspace

log = logging.getLogger(__name__)

# The time indexes are partitioned by (timeline, floor(time / BUCKET_SECONDS)). Changing it
# re-partitions every index: it is part of the schema, not a setting.
BUCKET_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "media records, references and their indexes",
        (
            # One row per upload. Every write to it is a lightweight transaction.
            """
            CREATE TABLE IF NOT EXISTS {ks}.media (
              media_id text PRIMARY KEY,
              conversation_id text,
              conversation_kind int,
              uploader_id text,
              state int,
              file_name text,
              content_type text,
              size_bytes bigint,
              created_at double,
              blob_key text,
              sha256 text,
              width int,
              height int,
              blurhash text,
              thumbnails map<text, text>,
              reject_reason text,
              reject_detail text,
              deleted_at double
            )
            """,
            # The messages attaching a media id (`deleted` null: live).
            """
            CREATE TABLE IF NOT EXISTS {ks}.media_refs (
              media_id text,
              conversation_id text,
              seq bigint,
              created_at double,
              deleted boolean,
              PRIMARY KEY (media_id, conversation_id, seq)
            )
            """,
            # The same references by message, for delete_message.
            """
            CREATE TABLE IF NOT EXISTS {ks}.message_media (
              conversation_id text,
              seq bigint,
              media_id text,
              PRIMARY KEY ((conversation_id, seq), media_id)
            )
            """,
            # Recent uploads of a user for the quota sum (rows expire: see cql.py).
            """
            CREATE TABLE IF NOT EXISTS {ks}.uploader_media (
              uploader_id text,
              created_at double,
              media_id text,
              size_bytes bigint,
              rejected boolean,
              PRIMARY KEY (uploader_id, created_at, media_id)
            )
            """,
            # The records that use a blob key (duplicates share their objects).
            """
            CREATE TABLE IF NOT EXISTS {ks}.blob_media (
              blob_key text,
              media_id text,
              PRIMARY KEY (blob_key, media_id)
            )
            """,
            # Time indexes, one timeline each ('pending', 'deleted', 'live:<kind>'), one
            # partition per timeline and day; entries may be stale and are checked on read.
            """
            CREATE TABLE IF NOT EXISTS {ks}.media_timeline (
              timeline text,
              bucket bigint,
              at double,
              media_id text,
              PRIMARY KEY ((timeline, bucket), at, media_id)
            ) WITH CLUSTERING ORDER BY (at ASC, media_id ASC)
            """,
            # The days of each timeline that may hold entries.
            """
            CREATE TABLE IF NOT EXISTS {ks}.media_timeline_buckets (
              timeline text,
              bucket bigint,
              PRIMARY KEY (timeline, bucket)
            ) WITH CLUSTERING ORDER BY (bucket ASC)
            """,
        ),
    ),
)


def valid_keyspace(name: str) -> str:
    if not name or not (name[0].isalpha() and name.replace("_", "a").isalnum()) or len(name) > 48:
        raise ValueError(f"not a valid keyspace name: {name!r}")
    return name.lower()


def migrate(
    session: Any,
    keyspace: str,
    replication: Mapping[str, Any],
    *,
    wait_timeout: float = 120.0,
    stale_after: float = 300.0,
) -> list[int]:
    """Creates the keyspace and applies every migration not yet done; returns the versions run.

    Blocking (DDL waits for schema agreement): call it at startup, off the event loop.
    """
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    ks = valid_keyspace(keyspace)
    # Refuses, before creating anything, a replication the cluster cannot meet.
    ensure_keyspace(session, ks, replication)
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.media_schema_migrations ("
        " version int PRIMARY KEY, description text, state text, owner text,"
        " claimed_at double, applied_at double)"
    )

    def stmt(cql: str) -> Any:
        return SimpleStatement(
            cql,
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        )

    table = f"{ks}.media_schema_migrations"
    select = stmt(f"SELECT state, owner, claimed_at FROM {table} WHERE version = %s")
    claim = stmt(
        f"INSERT INTO {table} (version, description, state, owner, claimed_at)"
        " VALUES (%s, %s, 'running', %s, %s) IF NOT EXISTS"
    )
    take_over = stmt(
        f"UPDATE {table} SET owner = %s, claimed_at = %s"
        " WHERE version = %s IF state = 'running' AND owner = %s"
    )
    finish = stmt(
        f"UPDATE {table} SET state = 'done', applied_at = %s WHERE version = %s IF owner = %s"
    )
    me = uuid.uuid4().hex
    ran: list[int] = []
    for migration in MIGRATIONS:
        deadline = time.monotonic() + wait_timeout
        while True:
            row = session.execute(select, (migration.version,)).one()
            if row is not None and row.state == "done":
                break
            if row is None:
                won = session.execute(
                    claim, (migration.version, migration.description, me, time.time())
                ).one()
                mine = bool(won[0])
            elif time.time() - (row.claimed_at or 0.0) > stale_after:
                log.warning("taking over stale migration %d from %s", migration.version, row.owner)
                won = session.execute(
                    take_over, (me, time.time(), migration.version, row.owner)
                ).one()
                mine = bool(won[0])
            else:
                mine = False
            if mine:
                for statement in migration.statements:
                    session.execute(statement.format(ks=ks))
                done = session.execute(finish, (time.time(), migration.version, me)).one()
                if not done[0]:
                    raise RuntimeError(f"lost the claim on media migration {migration.version}")
                ran.append(migration.version)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"media migration {migration.version} not done after {wait_timeout}s"
                )
            time.sleep(0.2)
    return ran
