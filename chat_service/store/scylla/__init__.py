"""The cluster chat store (ScyllaDB / Apache Cassandra): `ScyllaChatStore`, its settings, schema.

Modules: `schema` (tables and migrations), `statements` (the CQL and its rows), `session` (the
driver session and retry policy), `rounds` (the log-head round engine), `retention` (purging),
`store` (the ChatStore that composes them), `settings` (CHATMESH_SCYLLA_* from the environment).
The driver is imported only when a store connects.
"""

from .schema import (
    BUCKET_SIZE,
    CONVERSATIONS_GC_GRACE_SECONDS,
    MIGRATIONS,
    OUTBOX_SHARDS,
    Migration,
    migrate,
    valid_keyspace,
)
from .settings import ScyllaSettings, ScyllaSettingsError
from .store import DEFAULT_IDEMPOTENCY_TTL, ScyllaChatStore

__all__ = [
    "BUCKET_SIZE",
    "CONVERSATIONS_GC_GRACE_SECONDS",
    "DEFAULT_IDEMPOTENCY_TTL",
    "MIGRATIONS",
    "OUTBOX_SHARDS",
    "Migration",
    "ScyllaChatStore",
    "ScyllaSettings",
    "ScyllaSettingsError",
    "migrate",
    "valid_keyspace",
]
