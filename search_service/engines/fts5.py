"""The embedded engine: SQLite FTS5 (unicode61 tokenizer), snippets through FTS5's snippet().

A newest-first query reads only about a page of matches, whatever the number of messages that
match in all conversations:
- a document's rowid is its send time in ms shifted left by SLOT_BITS, plus a slot for messages
  of the same ms, so `ORDER BY rowid DESC` is newest first and FTS5 walks its posting lists from
  the newest end and stops when the page is full;
- the conversation is a second FTS5 column holding one token (`conversation_token`), and the
  caller's conversations are ANDed with the text in the MATCH, so FTS5 intersects posting lists
  instead of handing every match in every conversation to the filter;
- prefixes of 2 to 4 characters have their own index (`prefix='2 3 4'`): the last word of every
  query is a prefix, and without it FTS5 merges the posting lists of every word that starts
  with it before the first row comes out.

Files of an older layout are rebuilt in place on open (`_upgrade`), in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Sequence

from .base import Document, Hit, Order, Query

log = logging.getLogger(__name__)

_OPEN, _CLOSE = "\x02", "\x03"
WORD = re.compile(r"\w+", re.UNICODE)

# 1: time-keyed rowids, the `conv` column, the prefix index (0: the first layout).
SCHEMA_VERSION = 1
# Messages of one ms share a bucket of 2**16 rowids; rowids stay below 2**63 until the year 6429.
SLOT_BITS = 16
MAX_BUCKET = (1 << (63 - SLOT_BITS)) - 1
# Above this many conversations the MATCH names none and the SQL filter alone keeps the query
# to the caller's conversations: a bound on the size of the OR (each term opens a posting list),
# chosen, not measured; the bench's users are in 50.
MAX_MATCHED_CONVERSATIONS = 500

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, seq)
)""",
    "CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts"
    " USING fts5(body, conv, tokenize='unicode61', prefix='2 3 4')",
)
# rowid, conversation_id, seq, sender_id, sent_at_ms, version, marked snippet
_Row = tuple[int, str, int, str, int, int, str]
# The conversation column scores nothing: relevance is the text's alone.
_BM25 = "bm25(docs_fts, 1.0, 0.0)"


def conversation_token(conversation_id: str) -> str:
    """One token per conversation id, whatever its characters: 'c' and the hex of its UTF-8
    bytes (the tokenizer would split "a-b" into two words and fold "A" into "a")."""
    return "c" + conversation_id.encode().hex()


def fts_query(text: str) -> str:
    """Every word must match in the body; the last one as a prefix. Words are quoted: no FTS5
    syntax leaks."""
    words = WORD.findall(text)
    if not words:
        raise ValueError("the query has no words")
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return f"body : ({' '.join(quoted)})"


def conversations_query(conversations: Sequence[str]) -> str:
    return "conv : (" + " OR ".join(f'"{conversation_token(c)}"' for c in conversations) + ")"


def time_bucket(sent_at_ms: int) -> int:
    return min(max(sent_at_ms, 0), MAX_BUCKET)


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


def _new_rowid(db: sqlite3.Connection, sent_at_ms: int) -> int:
    """The next free rowid of the message's ms bucket."""
    low = time_bucket(sent_at_ms) << SLOT_BITS
    (top,) = db.execute(
        "SELECT max(rowid) FROM docs WHERE rowid >= ? AND rowid < ?", (low, low + (1 << SLOT_BITS))
    ).fetchone()
    rowid = low if top is None else top + 1
    if rowid >= low + (1 << SLOT_BITS):
        raise ValueError(f"more than {1 << SLOT_BITS} messages sent in the ms {sent_at_ms}")
    return int(rowid)


def _tombstone_rowid(db: sqlite3.Connection) -> int:
    """Tombstones are never searched, so they take negative rowids, out of the time order."""
    (low,) = db.execute("SELECT min(rowid) FROM docs").fetchone()
    return -1 if low is None or low >= 0 else int(low) - 1


def _upgrade(db: sqlite3.Connection) -> None:
    """Brings an index of an older layout to SCHEMA_VERSION in one transaction (a killed
    process leaves the old layout, and the next open starts again): every document keeps its
    text, version and tombstone, under a time-keyed rowid, with its conversation token."""
    began = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have upgraded the file meanwhile.
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version >= SCHEMA_VERSION:
            db.execute("COMMIT")
            return
        if version < 1:
            # A bucket holding more messages than slots would fail the copy, so say why first.
            (crowded,) = db.execute(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM docs WHERE removed = 0"
                " GROUP BY min(max(sent_at_ms, 0), ?))",
                (MAX_BUCKET,),
            ).fetchone()
            if crowded is not None and crowded > 1 << SLOT_BITS:
                raise ValueError(f"{crowded} messages share one ms: reindex instead")
            db.execute("DROP INDEX IF EXISTS docs_time")
            db.execute("ALTER TABLE docs RENAME TO docs_v0")
            db.execute("ALTER TABLE docs_fts RENAME TO docs_fts_v0")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("CREATE TEMP TABLE rowid_v0 (old INTEGER PRIMARY KEY, new INTEGER)")
            db.execute(
                "INSERT INTO rowid_v0 (old, new) SELECT rowid, CASE WHEN removed"
                " THEN -row_number() OVER (PARTITION BY removed ORDER BY rowid)"
                " ELSE (min(max(sent_at_ms, 0), :top) << :bits) - 1 + row_number() OVER"
                " (PARTITION BY removed, min(max(sent_at_ms, 0), :top) ORDER BY rowid) END"
                " FROM docs_v0",
                {"top": MAX_BUCKET, "bits": SLOT_BITS},
            )
            db.execute(
                "INSERT INTO docs (rowid, conversation_id, seq, sender_id, sent_at_ms, version,"
                " removed) SELECT m.new, d.conversation_id, d.seq, d.sender_id, d.sent_at_ms,"
                " d.version, d.removed FROM docs_v0 d JOIN rowid_v0 m ON m.old = d.rowid"
            )
            db.execute(
                "INSERT INTO docs_fts (rowid, body, conv) SELECT m.new, f.body,"
                " 'c' || lower(hex(CAST(d.conversation_id AS BLOB)))"
                " FROM docs_fts_v0 f JOIN docs_v0 d ON d.rowid = f.rowid"
                " JOIN rowid_v0 m ON m.old = f.rowid WHERE d.removed = 0 ORDER BY m.new"
            )
            db.execute("DROP TABLE rowid_v0")
            db.execute("DROP TABLE docs_fts_v0")
            db.execute("DROP TABLE docs_v0")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    (count,) = db.execute("SELECT count(*) FROM docs").fetchone()
    log.info(
        "search index upgraded from layout %d to %d: %d documents in %.1f s",
        version,
        SCHEMA_VERSION,
        count,
        time.perf_counter() - began,
    )


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
        db = sqlite3.connect(self._path, check_same_thread=False)
        try:
            if self._path != ":memory:":
                # The index is rebuilt from the log (`chatmesh search reindex`), so it survives
                # a killed process but needs no sync per message: without these each indexed
                # message waits for a disk flush (a hundred a second on an ordinary disk).
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _prepare(self, db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path} is a search index of layout {version}; this build knows"
                f" {SCHEMA_VERSION}"
            )
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'docs'").fetchone()
        if exists is None:
            with db:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:
            _upgrade(db)

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
                    rowid = _new_rowid(db, doc.sent_at_ms)
                    db.execute(
                        "INSERT INTO docs (rowid, conversation_id, seq, sender_id, sent_at_ms,"
                        " version) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            rowid,
                            doc.conversation_id,
                            doc.seq,
                            doc.sender_id,
                            doc.sent_at_ms,
                            doc.version,
                        ),
                    )
                    db.execute(
                        "INSERT INTO docs_fts (rowid, body, conv) VALUES (?, ?, ?)",
                        (rowid, doc.body, conversation_token(doc.conversation_id)),
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
                        "INSERT INTO docs (rowid, conversation_id, seq, sender_id, sent_at_ms,"
                        " version, removed) VALUES (?, ?, ?, '', 0, 0, 1)",
                        (_tombstone_rowid(db), conversation_id, seq),
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
        if query.limit <= 0:
            return []
        if len(query.conversations) <= MAX_MATCHED_CONVERSATIONS:
            match += " AND " + conversations_query(query.conversations)
        # The SQL filter holds even when the MATCH names the conversations: access never
        # depends on how conversation ids are tokenized.
        marks = ",".join("?" for _ in query.conversations)
        where = ["docs_fts MATCH ?", "d.removed=0", f"d.conversation_id IN ({marks})"]
        args: list[object] = [match, *query.conversations]
        if query.sender_id:
            where.append("d.sender_id=?")
            args.append(query.sender_id)
        if query.after_ms is not None:
            # The rowid bound lets FTS5 skip older postings; the sent_at_ms one is exact.
            where += ["docs_fts.rowid>=?", "d.sent_at_ms>=?"]
            args += [time_bucket(query.after_ms) << SLOT_BITS, query.after_ms]
        if query.before_ms is not None:
            where += ["docs_fts.rowid<?", "d.sent_at_ms<?"]
            args += [(time_bucket(query.before_ms) + 1) << SLOT_BITS, query.before_ms]
        columns = (
            "SELECT d.rowid, d.conversation_id, d.seq, d.sender_id, d.sent_at_ms, d.version,"
            f" snippet(docs_fts, 0, '{_OPEN}', '{_CLOSE}', '…', 24)"
            " FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid"
            f" WHERE {' AND '.join(where)}"
        )
        async with self._lock:
            rows: list[_Row]
            if query.order is Order.RELEVANCE:
                sql = f"{columns} ORDER BY {_BM25}, d.sent_at_ms DESC LIMIT ? OFFSET ?"
                rows = self.db.execute(sql, [*args, query.limit, query.offset]).fetchall()
            else:
                rows = self._newest(f"{columns} ORDER BY docs_fts.rowid DESC", args, query)
        hits = []
        for _, conversation_id, seq, sender_id, sent_at_ms, version, marked in rows:
            snippet, ranges = split_marks(marked)
            hits.append(Hit(conversation_id, seq, sender_id, sent_at_ms, version, snippet, ranges))
        return hits

    def _newest(self, sql: str, args: list[object], query: Query) -> list[_Row]:
        """The page in (sent_at_ms desc, conversation, seq desc) order, reading matches in
        rowid order only until the page is full and its last ms is complete (messages of one
        ms are in slot order in the index, not in the page's order)."""
        wanted = query.offset + query.limit
        rows: list[_Row] = []
        last_bucket: int | None = None
        cursor = self.db.execute(sql, args)
        try:
            for row in cursor:
                bucket = int(row[0]) >> SLOT_BITS
                if last_bucket is not None and bucket != last_bucket:
                    break
                rows.append(row)
                if len(rows) >= wanted:
                    last_bucket = bucket
        finally:
            cursor.close()
        rows.sort(key=lambda r: (-r[4], r[1], -r[2]))
        return rows[query.offset : wanted]
