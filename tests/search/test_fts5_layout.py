"""The FTS5 engine's file: an index of the first layout is upgraded in place on open, a newer
one is refused, and a newest-first query is answered in index order (no sort of every match)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from search_service.engines.base import Document, Query
from search_service.engines.fts5 import SCHEMA_VERSION, Fts5Engine

pytestmark = pytest.mark.timeout(30)

# The first layout, as the first version of the engine wrote it.
_LAYOUT_0 = """
CREATE TABLE docs (
    rowid INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX docs_time ON docs (sent_at_ms DESC);
CREATE VIRTUAL TABLE docs_fts USING fts5(body, tokenize='unicode61');
"""


def _write_layout_0(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(_LAYOUT_0)
    rows = [
        # rowid, conversation, seq, sender, sent_at_ms, version, removed, body (None: not indexed)
        (1, "c1", 2, "u1", 5000, 1, 0, "the later hello"),
        (2, "c1", 1, "u2", 1000, 2, 0, "an edited hello"),
        (3, "c2", 1, "u1", 5000, 1, 0, "hello at the same ms"),
        (4, "c1", 3, "", 0, 0, 1, None),  # a delete seen before its create
        (5, "c3", 1, "u1", 3000, 1, 1, None),  # purged
    ]
    with db:
        for rowid, conv, seq, sender, sent, version, removed, body in rows:
            db.execute(
                "INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rowid, conv, seq, sender, sent, version, removed),
            )
            if body is not None:
                db.execute("INSERT INTO docs_fts (rowid, body) VALUES (?, ?)", (rowid, body))
    db.close()


async def _keys(engine: Fts5Engine, text: str) -> list[tuple[str, int, int]]:
    hits = await engine.search(Query(text, conversations=["c1", "c2", "c3"]))
    return [(h.conversation_id, h.seq, h.version) for h in hits]


async def test_an_index_of_the_first_layout_is_upgraded_in_place(tmp_path: Path) -> None:
    """Every document keeps its text, version and tombstone; new writes go to the new layout."""
    path = tmp_path / "search.db"
    _write_layout_0(path)
    engine = Fts5Engine(str(path))
    await engine.open()
    try:
        assert engine.db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert await _keys(engine, "hello") == [("c1", 2, 1), ("c2", 1, 1), ("c1", 1, 2)]
        assert await _keys(engine, "edited") == [("c1", 1, 2)]
        await engine.upsert(Document("c1", 3, "u1", 6000, 1, "hello again"))  # tombstoned
        await engine.upsert(Document("c1", 4, "u1", 9000, 1, "hello anew"))
        assert [k[:2] for k in await _keys(engine, "hello")][:2] == [("c1", 4), ("c1", 2)]
    finally:
        await engine.close()
    again = Fts5Engine(str(path))
    await again.open()  # already upgraded: nothing to do
    try:
        assert len(await _keys(again, "hello")) == 4
    finally:
        await again.close()


async def test_an_index_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    """An older build must not write a file it does not understand."""
    path = tmp_path / "search.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="layout"):
        await Fts5Engine(str(path)).open()


async def test_a_newest_first_query_is_read_in_index_order() -> None:
    """The plan walks the FTS5 index newest first: no temporary sort of every match."""
    engine = Fts5Engine()
    await engine.open()
    try:
        for seq in range(1, 30):
            await engine.upsert(Document("c1", seq, "u1", seq * 1000, 1, f"word {seq}"))
        statements: list[str] = []
        engine.db.set_trace_callback(statements.append)
        hits = await engine.search(Query("word", conversations=["c1", "c2"], limit=5))
        engine.db.set_trace_callback(None)
        assert [h.seq for h in hits] == [29, 28, 27, 26, 25]
        [sql] = [s for s in statements if "MATCH" in s]
        plan = " ".join(r[3] for r in engine.db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "TEMP B-TREE" not in plan
        assert "SCAN docs_fts VIRTUAL TABLE" in plan
    finally:
        await engine.close()
