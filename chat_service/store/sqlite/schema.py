"""The SQLite schema of the embedded store, its connection settings and its migrations.

Tables and indexes that only add to the schema (the moderation tables: reports, bans,
suspensions, held messages; the index of messages by message_id) are created by
`CREATE ... IF NOT EXISTS` on every open, so they need no version step.

`migrate` creates a new file at SCHEMA_VERSION and upgrades a file of an older version in one
transaction; a file of a newer version is refused (an older build must not write it).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
  conversation_id TEXT PRIMARY KEY,
  kind INTEGER NOT NULL,
  title TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at REAL NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  member_count INTEGER NOT NULL DEFAULT 0,
  archived INTEGER NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL,
  direct_key TEXT UNIQUE,
  first_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS members (
  conversation_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  role INTEGER NOT NULL,
  joined_at REAL NOT NULL,
  last_read_seq INTEGER NOT NULL DEFAULT 0,
  last_delivered_seq INTEGER NOT NULL DEFAULT 0,
  muted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, conversation_id);
CREATE TABLE IF NOT EXISTS messages (
  conversation_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  sender_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  kind INTEGER NOT NULL,
  body TEXT NOT NULL,
  attachments TEXT NOT NULL,
  reply_to_seq INTEGER NOT NULL,
  version INTEGER NOT NULL,
  edited_at REAL,
  deleted INTEGER NOT NULL DEFAULT 0,
  client_msg_id TEXT NOT NULL,
  PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
  ON messages (conversation_id, sender_id, client_msg_id);
CREATE INDEX IF NOT EXISTS messages_by_message_id ON messages (message_id);
CREATE TABLE IF NOT EXISTS events (
  conversation_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  actor_id TEXT NOT NULL,
  occurred_at REAL NOT NULL,
  message_seq INTEGER NOT NULL DEFAULT 0,
  member_user_id TEXT NOT NULL DEFAULT '',
  member_role INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
  conversation_id TEXT PRIMARY KEY,
  from_seq INTEGER NOT NULL,
  up_to_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
  user_id TEXT NOT NULL,
  blocked_user_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  PRIMARY KEY (user_id, blocked_user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reports (
  report_id TEXT PRIMARY KEY,
  reporter_id TEXT NOT NULL,
  target_key TEXT NOT NULL,
  reason INTEGER NOT NULL,
  details TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  message_seq INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  status INTEGER NOT NULL,
  resolved_by TEXT NOT NULL DEFAULT '',
  resolved_at REAL,
  resolution TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS reports_by_target ON reports (reporter_id, target_key);
CREATE INDEX IF NOT EXISTS reports_by_status ON reports (status, report_id);
CREATE TABLE IF NOT EXISTS bans (
  conversation_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  banned_by TEXT NOT NULL,
  banned_at REAL NOT NULL,
  reason TEXT NOT NULL,
  PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suspensions (
  user_id TEXT PRIMARY KEY,
  suspended_by TEXT NOT NULL,
  suspended_at REAL NOT NULL,
  reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held_messages (
  message_id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL,
  sender_id TEXT NOT NULL,
  client_msg_id TEXT NOT NULL,
  created_at REAL NOT NULL,
  kind INTEGER NOT NULL,
  body TEXT NOT NULL,
  attachments TEXT NOT NULL,
  reply_to_seq INTEGER NOT NULL,
  reason TEXT NOT NULL,
  held_at REAL NOT NULL,
  state INTEGER NOT NULL,
  decided_by TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS held_by_client_id
  ON held_messages (conversation_id, sender_id, client_msg_id);
CREATE INDEX IF NOT EXISTS held_by_state ON held_messages (state, message_id);
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def migrate(path: str) -> None:
    """Brings the file at `path` to SCHEMA_VERSION (creating it when new)."""
    setup = connect(path)
    try:
        setup.executescript(SCHEMA)
        row = setup.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            setup.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} has schema version {row[0]}; this build knows {SCHEMA_VERSION}"
            )
        elif row[0] < SCHEMA_VERSION:
            _upgrade(setup, row[0])
    finally:
        setup.close()


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Brings a file of an older schema version up to SCHEMA_VERSION, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:
            # 2: the retention horizon of each conversation.
            columns = {r[1] for r in conn.execute("PRAGMA table_info(conversations)")}
            if "first_seq" not in columns:
                conn.execute(
                    "ALTER TABLE conversations ADD COLUMN first_seq INTEGER NOT NULL DEFAULT 1"
                )
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
