"""The CQL schema of the cluster store (ScyllaDB; Cassandra 4+ works too) and its migrations.

Migrations are numbered and recorded in `<keyspace>.schema_migrations`. `migrate()` is safe to run
twice and from several processes at once: each migration is claimed with an LWT
(`INSERT ... IF NOT EXISTS` on its row), only the claimer runs its DDL (every statement is
`CREATE ... IF NOT EXISTS`, so a claimer that died half-way can be redone), and the others wait for
the row to say `done`. A claim older than `stale_after` seconds is taken over (LWT on the owner).

See docs/storage.md for the data model and the reasoning behind it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatmesh_common.cql_replication import ReplicationError as ReplicationError
from chatmesh_common.cql_replication import ensure_keyspace
from chatmesh_common.cql_replication import replication_clause as replication_clause

log = logging.getLogger(__name__)

# Messages and events are partitioned by (conversation_id, seq // BUCKET_SIZE). Changing it
# re-partitions every conversation: it is part of the schema, not a setting.
BUCKET_SIZE = 1000

# `conversations` holds idempotency keys as short-lived rows (TTL'd) next to the static log head.
# Their expiry leaves tombstones in the partition whose static row every write reads; nothing in
# this table is ever deleted by a client except orphaned direct-conversation attempts, so a short
# gc_grace is safe and keeps those tombstones from piling up.
CONVERSATIONS_GC_GRACE_SECONDS = 3 * 3600


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            # The log head: static columns are the conversation; rows are idempotency keys.
            """
            CREATE TABLE IF NOT EXISTS {ks}.conversations (
              conversation_id text,
              sender_id text,
              client_msg_id text,
              kind int STATIC,
              title text STATIC,
              created_by text STATIC,
              created_at double STATIC,
              last_seq bigint STATIC,
              member_count int STATIC,
              archived boolean STATIC,
              updated_at double STATIC,
              direct_key text STATIC,
              initial_members text STATIC,
              pending text STATIC,
              msg_seq bigint,
              PRIMARY KEY (conversation_id, sender_id, client_msg_id)
            ) WITH gc_grace_seconds = {conversations_gc_grace}
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.direct_conversations (
              direct_key text PRIMARY KEY,
              conversation_id text
            )
            """,
            # Written with USING TIMESTAMP <seq>: see docs/storage.md ("seq timestamps").
            """
            CREATE TABLE IF NOT EXISTS {ks}.members (
              conversation_id text,
              user_id text,
              role int,
              joined_at double,
              last_read_seq bigint,
              last_delivered_seq bigint,
              PRIMARY KEY (conversation_id, user_id)
            ) WITH CLUSTERING ORDER BY (user_id ASC)
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.member_prefs (
              conversation_id text,
              user_id text,
              muted boolean,
              PRIMARY KEY (conversation_id, user_id)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.user_conversations (
              user_id text,
              conversation_id text,
              PRIMARY KEY (user_id, conversation_id)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.messages (
              conversation_id text,
              bucket bigint,
              seq bigint,
              message_id text,
              sender_id text,
              created_at double,
              kind int,
              body text,
              attachments text,
              reply_to_seq bigint,
              version int,
              edited_at double,
              deleted boolean,
              client_msg_id text,
              PRIMARY KEY ((conversation_id, bucket), seq)
            ) WITH CLUSTERING ORDER BY (seq DESC)
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.events (
              conversation_id text,
              bucket bigint,
              seq bigint,
              kind int,
              actor_id text,
              occurred_at double,
              message_seq bigint,
              member_user_id text,
              member_role int,
              PRIMARY KEY ((conversation_id, bucket), seq)
            ) WITH CLUSTERING ORDER BY (seq ASC)
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.blocks (
              user_id text,
              blocked_user_id text,
              created_at double,
              PRIMARY KEY (user_id, blocked_user_id)
            )
            """,
        ),
    ),
    Migration(
        2,
        "outbox",
        (
            # Conversations that may have events not yet relayed to the event stream, spread over
            # OUTBOX_SHARDS partitions. Written USING TIMESTAMP <seq> before the seq is taken,
            # deleted USING TIMESTAMP <relayed seq>: a delete never hides a newer write.
            """
            CREATE TABLE IF NOT EXISTS {ks}.outbox_index (
              shard int,
              conversation_id text,
              PRIMARY KEY (shard, conversation_id)
            )
            """,
            # The highest seq relayed, written USING TIMESTAMP <that seq>: it only moves forward.
            """
            CREATE TABLE IF NOT EXISTS {ks}.outbox_relayed (
              conversation_id text PRIMARY KEY,
              relayed_seq bigint
            )
            """,
        ),
    ),
    Migration(
        3,
        "retention horizon",
        (
            # The lowest seq still kept (null = 1). Written USING TIMESTAMP <value> by the
            # retention purge only, never in an LWT: it only moves forward. ALTER has no
            # IF NOT EXISTS everywhere: migrate() treats "column exists" as done.
            "ALTER TABLE {ks}.conversations ADD first_seq bigint STATIC",
        ),
    ),
    Migration(
        4,
        "moderation",
        (
            """
            CREATE TABLE IF NOT EXISTS {ks}.reports (
              report_id text PRIMARY KEY,
              reporter_id text,
              reason int,
              details text,
              conversation_id text,
              message_seq bigint,
              message_id text,
              user_id text,
              created_at double,
              status int,
              resolved_by text,
              resolved_at double,
              resolution text
            )
            """,
            # One report per reporter and target: claimed with an LWT after the report is written.
            """
            CREATE TABLE IF NOT EXISTS {ks}.report_keys (
              reporter_id text,
              target_key text,
              report_id text,
              PRIMARY KEY (reporter_id, target_key)
            )
            """,
            # The moderators' queue by status (0: every report), oldest report id first.
            """
            CREATE TABLE IF NOT EXISTS {ks}.report_queue (
              status int,
              report_id text,
              PRIMARY KEY (status, report_id)
            ) WITH CLUSTERING ORDER BY (report_id ASC)
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.bans (
              conversation_id text,
              user_id text,
              banned_by text,
              banned_at double,
              reason text,
              PRIMARY KEY (conversation_id, user_id)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS {ks}.suspensions (
              user_id text PRIMARY KEY,
              suspended_by text,
              suspended_at double,
              reason text
            )
            """,
        ),
    ),
    Migration(
        5,
        "suspension fences",
        (
            # Suspended writers of the conversation (user -> suspended_at), in the log head:
            # every round's LWT requires `fences[writer] = null`, so a suspension fenced here
            # binds every later write of that user, on every process. Written by LWT only.
            "ALTER TABLE {ks}.conversations ADD fences map<text, double> STATIC",
        ),
    ),
    Migration(
        6,
        "messages by id",
        (
            # Where a server message_id is: written when its round is materialized (an
            # idempotent write, like the message row). Read back through the message row, so a
            # row left by a purged message finds nothing.
            """
            CREATE TABLE IF NOT EXISTS {ks}.messages_by_id (
              message_id text PRIMARY KEY,
              conversation_id text,
              seq bigint
            )
            """,
        ),
    ),
    Migration(
        7,
        "held messages",
        (
            # Channel messages the screen held for review (no seq until released).
            """
            CREATE TABLE IF NOT EXISTS {ks}.held_messages (
              message_id text PRIMARY KEY,
              conversation_id text,
              sender_id text,
              client_msg_id text,
              created_at double,
              kind int,
              body text,
              attachments text,
              reply_to_seq bigint,
              reason text,
              held_at double,
              state int,
              decided_by text
            )
            """,
            # One held message per send: claimed with an LWT after the row is written.
            """
            CREATE TABLE IF NOT EXISTS {ks}.held_keys (
              conversation_id text,
              sender_id text,
              client_msg_id text,
              message_id text,
              PRIMARY KEY ((conversation_id, sender_id, client_msg_id))
            )
            """,
            # The pending ones, oldest first (one partition: they wait for a person).
            """
            CREATE TABLE IF NOT EXISTS {ks}.held_queue (
              part int,
              message_id text,
              PRIMARY KEY (part, message_id)
            ) WITH CLUSTERING ORDER BY (message_id ASC)
            """,
        ),
    ),
)

OUTBOX_SHARDS = 16


def valid_keyspace(name: str) -> str:
    if not name or not (name[0].isalpha() and name.replace("_", "a").isalnum()) or len(name) > 48:
        raise ValueError(f"not a valid keyspace name: {name!r}")
    return name.lower()


def _column_exists(statement: str, exc: Exception) -> bool:
    """An `ALTER TABLE ... ADD` redone by a migrator that took over a half-done migration."""
    text = str(exc).lower()
    return statement.lstrip().upper().startswith("ALTER TABLE") and (
        "conflicts with an existing column" in text or "already exist" in text
    )


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
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
        " version int PRIMARY KEY, description text, state text, owner text,"
        " claimed_at double, applied_at double)"
    )

    def stmt(cql: str) -> Any:
        return SimpleStatement(
            cql,
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        )

    select = stmt(f"SELECT state, owner, claimed_at FROM {ks}.schema_migrations WHERE version = %s")
    claim = stmt(
        f"INSERT INTO {ks}.schema_migrations (version, description, state, owner, claimed_at)"
        " VALUES (%s, %s, 'running', %s, %s) IF NOT EXISTS"
    )
    take_over = stmt(
        f"UPDATE {ks}.schema_migrations SET owner = %s, claimed_at = %s"
        " WHERE version = %s IF state = 'running' AND owner = %s"
    )
    finish = stmt(
        f"UPDATE {ks}.schema_migrations SET state = 'done', applied_at = %s"
        " WHERE version = %s IF owner = %s"
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
                    try:
                        session.execute(
                            statement.format(
                                ks=ks, conversations_gc_grace=CONVERSATIONS_GC_GRACE_SECONDS
                            )
                        )
                    except Exception as exc:
                        if not _column_exists(statement, exc):
                            raise
                done = session.execute(finish, (time.time(), migration.version, me)).one()
                if not done[0]:
                    raise RuntimeError(f"lost the claim on migration {migration.version}")
                ran.append(migration.version)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"migration {migration.version} not done after {wait_timeout}s")
            time.sleep(0.2)
    return ran
