"""The embedded engine: SQLite FTS5 (unicode61 tokenizer), snippets through FTS5's snippet()."""

from __future__ import annotations

import asyncio
import re
import sqlite3

from .base import Document, Hit, Order, Query

_OPEN, _CLOSE = "\x02", "\x03"
WORD = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS docs_time ON docs (sent_at_ms DESC);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(body, tokenize='unicode61');
"""


def fts_query(text: str) -> str:
    """Every word must match; the last one as a prefix. Words are quoted: no FTS5 syntax leaks."""
    words = WORD.findall(text)
    if not words:
        raise ValueError("the query has no words")
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def split_marks(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The snippet without its markers, and where the marked ranges are."""
    out: list[str] = []
    ranges: list[tuple[int, int]] = []
    start = 0
    length = 0
    for ch in marked:
        if ch == _OPEN:
            start = length
        elif ch == _CLOSE:
            ranges.append((start, length))
        else:
            out.append(ch)
            length += 1
    return "".join(out), tuple(ranges)


class Fts5Engine:
    def __init__(self, path: str = ":memory:") -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "the engine is not open"
        return self._db

    async def open(self) -> None:
        self._db = sqlite3.connect(self._path, check_same_thread=False)
        if self._path != ":memory:":
            # The index is rebuilt from the log (`chatmesh search reindex`), so it survives a
            # killed process but needs no sync per message: without these each indexed message
            # waits for a disk flush (a hundred a second on an ordinary disk).
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def upsert(self, doc: Document) -> None:
        async with self._lock:
            db = self.db
            row = db.execute(
                "SELECT rowid, version, removed FROM docs WHERE conversation_id=? AND seq=?",
                (doc.conversation_id, doc.seq),
            ).fetchone()
            with db:
                if row is None:
                    cur = db.execute(
                        "INSERT INTO docs (conversation_id, seq, sender_id, sent_at_ms, version)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (doc.conversation_id, doc.seq, doc.sender_id, doc.sent_at_ms, doc.version),
                    )
                    db.execute(
                        "INSERT INTO docs_fts (rowid, body) VALUES (?, ?)",
                        (cur.lastrowid, doc.body),
                    )
                    return
                rowid, version, removed = row
                if removed or version >= doc.version:
                    return
                db.execute("UPDATE docs SET version=? WHERE rowid=?", (doc.version, rowid))
                db.execute("UPDATE docs_fts SET body=? WHERE rowid=?", (doc.body, rowid))

    async def remove(self, conversation_id: str, seq: int) -> None:
        async with self._lock:
            db = self.db
            with db:
                row = db.execute(
                    "SELECT rowid FROM docs WHERE conversation_id=? AND seq=?",
                    (conversation_id, seq),
                ).fetchone()
                if row is None:
                    # A tombstone, so a late or redelivered create never brings it back.
                    db.execute(
                        "INSERT INTO docs (conversation_id, seq, sender_id, sent_at_ms, version,"
                        " removed) VALUES (?, ?, '', 0, 0, 1)",
                        (conversation_id, seq),
                    )
                    return
                db.execute("UPDATE docs SET removed=1 WHERE rowid=?", (row[0],))
                db.execute("DELETE FROM docs_fts WHERE rowid=?", (row[0],))

    async def purge_conversation(self, conversation_id: str) -> None:
        async with self._lock:
            db = self.db
            with db:
                db.execute(
                    "DELETE FROM docs_fts WHERE rowid IN"
                    " (SELECT rowid FROM docs WHERE conversation_id=?)",
                    (conversation_id,),
                )
                db.execute("UPDATE docs SET removed=1 WHERE conversation_id=?", (conversation_id,))

    async def search(self, query: Query) -> list[Hit]:
        if not query.conversations:
            return []
        match = fts_query(query.text)
        where = ["docs_fts MATCH ?", "d.removed=0"]
        args: list[object] = [match]
        marks = ",".join("?" for _ in query.conversations)
        where.append(f"d.conversation_id IN ({marks})")
        args.extend(query.conversations)
        if query.sender_id:
            where.append("d.sender_id=?")
            args.append(query.sender_id)
        if query.after_ms is not None:
            where.append("d.sent_at_ms>=?")
            args.append(query.after_ms)
        if query.before_ms is not None:
            where.append("d.sent_at_ms<?")
            args.append(query.before_ms)
        order = (
            "bm25(docs_fts), d.sent_at_ms DESC"
            if query.order is Order.RELEVANCE
            else "d.sent_at_ms DESC, d.conversation_id, d.seq DESC"
        )
        sql = (
            "SELECT d.conversation_id, d.seq, d.sender_id, d.sent_at_ms, d.version,"
            f" snippet(docs_fts, 0, '{_OPEN}', '{_CLOSE}', '…', 24)"
            " FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid"
            f" WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ? OFFSET ?"
        )
        args.extend((query.limit, query.offset))
        async with self._lock:
            rows = self.db.execute(sql, args).fetchall()
        hits = []
        for conversation_id, seq, sender_id, sent_at_ms, version, marked in rows:
            snippet, ranges = split_marks(marked)
            hits.append(Hit(conversation_id, seq, sender_id, sent_at_ms, version, snippet, ranges))
        return hits
