"""The embedded store opens files written by an older schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chat_service.store.base import Kind
from chat_service.store.sqlite import SCHEMA_VERSION, SqliteChatStore


async def test_a_version_1_file_gets_the_retention_horizon(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version (version) VALUES (1);
        CREATE TABLE conversations (
          conversation_id TEXT PRIMARY KEY, kind INTEGER NOT NULL, title TEXT NOT NULL,
          created_by TEXT NOT NULL, created_at REAL NOT NULL,
          last_seq INTEGER NOT NULL DEFAULT 0, member_count INTEGER NOT NULL DEFAULT 0,
          archived INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL, direct_key TEXT UNIQUE
        );
        INSERT INTO conversations (conversation_id, kind, title, created_by, created_at,
          last_seq, member_count, updated_at) VALUES ('c1', 2, 't', 'alice', 1.0, 4, 1, 2.0);
        """
    )
    conn.close()
    for _ in range(2):  # upgraded once, then opened as is
        store = SqliteChatStore(path)
        await store.open()
        try:
            conversation = await store.get_conversation("c1")
            assert conversation is not None
            assert (conversation.kind, conversation.last_seq) == (Kind.GROUP, 4)
            assert conversation.first_seq == 1
        finally:
            await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
