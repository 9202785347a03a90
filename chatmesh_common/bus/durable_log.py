"""The embedded durable log: what JetStream does for a cluster, in one SQLite file.

`publish_durable` appends to `log` (a unique `msg_id`: a repeat stores nothing). Each named
consumer keeps, in the same file, its filters, its ack wait, a cursor (the log seq up to which
it has taken events) and its in-flight deliveries (`pending`: seq, delivery count, deadline). A
fetch first redelivers what is past its deadline, then takes new events after the cursor; an ack
deletes the pending row. So after a restart a consumer resumes after its cursor, and what it had
not acked comes again once its deadline passes, as with JetStream.

Without a path the log lives in memory (tests that need no restart). Deadlines are wall time of
the injected clock (they must mean the same after a restart), so tests move a manual clock
instead of sleeping. Statements run inline on the event loop's thread: each is a few indexed
rows, cheaper than a hop to a thread. `append_grouped` (the bus's publishes) commits the appends
of one event-loop turn together: each caller returns once that one commit is done, so a publish
is as durable as before, at a third of the cost when several conversations publish at once. The
file is in WAL mode with `synchronous=NORMAL`: it survives a killed process (kill -9 of
`chatmesh dev`), not a power cut; a cluster has JetStream. Events older than `max_age_s` are
dropped, like the stream's max age.

Several processes may open one file (`chatmesh dev` runs its consumers in a worker process): the
`appended` wakeup reaches only fetches of the process that appended, so a log opened with
`poll_s` also looks, that often, at SQLite's `data_version` (it changes when another connection
commits) and takes again when it moved. Every write is a `BEGIN IMMEDIATE` transaction, so two
processes' takes and settles are serialized by SQLite's lock. Acks and naks of one event-loop
turn are committed together (`settle_grouped`), so a consumer holds the file's write lock a few
times per batch rather than once per event, which the appending process would wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatmesh_common.clock import Clock, SystemClock

from .base import check_consumer_args, check_fetch_args
from .wildcards import check_consumer_name, durable_filters, filter_tokens, tokens_match

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  subject TEXT NOT NULL,
  data BLOB NOT NULL,
  msg_id TEXT NOT NULL UNIQUE,
  published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (
  name TEXT PRIMARY KEY,
  filters TEXT NOT NULL,
  ack_wait_s REAL NOT NULL,
  cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
  consumer TEXT NOT NULL,
  seq INTEGER NOT NULL,
  deliveries INTEGER NOT NULL,
  deadline REAL NOT NULL,
  PRIMARY KEY (consumer, seq)
);
CREATE INDEX IF NOT EXISTS pending_by_deadline ON pending (consumer, deadline);
"""

# The log's file in a data dir (`chatmesh dev`).
DURABLE_LOG_FILE = "events.sqlite3"
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
# Old events are dropped at most this often (on a publish).
_PRUNE_EVERY_S = 600.0
# Filters are stored joined by a character no valid filter contains.
_FILTER_SEP = " "


def _match(filters: str, subject: str) -> bool:
    tokens = subject.split(".")
    return any(tokens_match(filter_tokens(p), tokens) for p in filters.split(_FILTER_SEP))


class DurableLog:
    def __init__(
        self,
        path: Path | None = None,
        clock: Clock | None = None,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        poll_s: float | None = None,
    ) -> None:
        if poll_s is not None and poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._clock = clock or SystemClock()
        self._max_age_s = max_age_s
        # How often a waiting fetch looks for commits of other processes (None: never).
        self.poll_s = poll_s
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            isolation_level=None,
            check_same_thread=False,
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.create_function("subject_matches", 2, _match, deterministic=True)
        self._db.executescript(_SCHEMA)
        self._appended = asyncio.Event()
        # The open group commit of `append_grouped` (None: no transaction is open).
        self._group: asyncio.Future[None] | None = None
        # Settles waiting for the end of this loop turn, and the future their commit resolves.
        self._settles: list[tuple[str, int, float | None]] = []
        self._settled: asyncio.Future[None] | None = None
        self._pruned_at = float("-inf")
        self._prune()

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Cursor]:
        self._flush()
        cursor = self._db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def append(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Stores one event; False if `msg_id` is stored already."""
        self._flush()
        added = self._insert(subject, data, msg_id)
        if added:
            self._wake()
        return added

    async def append_grouped(self, subject: str, data: bytes, msg_id: str) -> bool:
        """`append`, committed with the other appends of this event-loop turn; returns once
        the commit is done (raises if it failed)."""
        group = self._group
        if group is None:
            self._prune_if_due()
            self._db.execute("BEGIN IMMEDIATE")
            group = self._group = asyncio.get_running_loop().create_future()
            group.get_loop().call_soon(self._flush)
        try:
            added = self._insert(subject, data, msg_id)
        except BaseException:
            self._flush()
            raise
        await asyncio.shield(group)
        return added

    def _insert(self, subject: str, data: bytes, msg_id: str) -> bool:
        self._prune_if_due()
        return bool(
            self._db.execute(
                "INSERT OR IGNORE INTO log (subject, data, msg_id, published_at)"
                " VALUES (?, ?, ?, ?)",
                (subject, data, msg_id, self._clock.now()),
            ).rowcount
        )

    def _prune_if_due(self) -> None:
        if self._group is None and self._clock.now() - self._pruned_at >= _PRUNE_EVERY_S:
            self._prune()

    def _flush(self) -> None:
        """Commits the open group (before any other statement, and at the end of its turn)."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            group.set_exception(exc)
            return
        group.set_result(None)
        self._wake()

    def _wake(self) -> None:
        # Every fetch waiting now holds this event; later ones take the fresh one.
        self._appended.set()
        self._appended = asyncio.Event()

    def _prune(self) -> None:
        now = self._clock.now()
        self._pruned_at = now
        with self._txn() as c:
            c.execute("DELETE FROM log WHERE published_at < ?", (now - self._max_age_s,))
            if c.rowcount:
                c.execute("DELETE FROM pending WHERE seq NOT IN (SELECT seq FROM log)")

    def consumer(
        self, name: str, filter_subjects: str | Sequence[str], ack_wait_s: float
    ) -> EmbeddedConsumer:
        check_consumer_name(name)
        check_consumer_args(ack_wait_s)
        filters = _FILTER_SEP.join(durable_filters(filter_subjects))
        self._flush()
        self._db.execute(
            "INSERT INTO consumers (name, filters, ack_wait_s, cursor) VALUES (?, ?, ?, 0)"
            " ON CONFLICT (name) DO UPDATE SET filters = excluded.filters,"
            " ack_wait_s = excluded.ack_wait_s",
            (name, filters, ack_wait_s),
        )
        return EmbeddedConsumer(self, name, filters, ack_wait_s)

    def take(self, name: str, filters: str, ack_wait_s: float, batch: int) -> list[EmbeddedMessage]:
        """Redeliveries past their deadline, then new events; all recorded as in flight."""
        now = self._clock.now()
        deadline = now + ack_wait_s
        taken: list[EmbeddedMessage] = []
        with self._txn() as c:
            due = c.execute(
                "SELECT p.seq, p.deliveries + 1, l.subject, l.data, l.msg_id FROM pending p"
                " JOIN log l ON l.seq = p.seq WHERE p.consumer = ? AND p.deadline <= ?"
                " ORDER BY p.seq LIMIT ?",
                (name, now, batch),
            ).fetchall()
            c.executemany(
                "UPDATE pending SET deliveries = ?, deadline = ? WHERE consumer = ? AND seq = ?",
                [(row[1], deadline, name, row[0]) for row in due],
            )
            taken += (EmbeddedMessage(self, name, *row) for row in due)
            room = batch - len(due)
            if room:
                (cursor,) = c.execute(
                    "SELECT cursor FROM consumers WHERE name = ?", (name,)
                ).fetchone()
                new = c.execute(
                    "SELECT seq, 1, subject, data, msg_id FROM log"
                    " WHERE seq > ? AND subject_matches(?, subject) ORDER BY seq LIMIT ?",
                    (cursor, filters, room),
                ).fetchall()
                c.executemany(
                    "INSERT OR REPLACE INTO pending (consumer, seq, deliveries, deadline)"
                    " VALUES (?, ?, 1, ?)",
                    [(name, row[0], deadline) for row in new],
                )
                taken += (EmbeddedMessage(self, name, *row) for row in new)
                if len(new) == room:
                    cursor = new[-1][0]
                else:
                    # Nothing else matches up to the end: skip what does not match for good.
                    (top,) = c.execute("SELECT COALESCE(MAX(seq), 0) FROM log").fetchone()
                    cursor = max(cursor, top)
                c.execute("UPDATE consumers SET cursor = ? WHERE name = ?", (cursor, name))
        return taken

    def next_deadline(self, name: str) -> float | None:
        self._flush()
        (deadline,) = self._db.execute(
            "SELECT MIN(deadline) FROM pending WHERE consumer = ?", (name,)
        ).fetchone()
        return float(deadline) if deadline is not None else None

    def settle(self, name: str, seq: int, retry_after_s: float | None) -> None:
        """Acks (`retry_after_s` None) or naks one delivery."""
        self._flush()
        if retry_after_s is None:
            self._db.execute("DELETE FROM pending WHERE consumer = ? AND seq = ?", (name, seq))
            return
        self._db.execute(
            "UPDATE pending SET deadline = ? WHERE consumer = ? AND seq = ?",
            (self._clock.now() + retry_after_s, name, seq),
        )
        self._wake()

    async def settle_grouped(self, name: str, seq: int, retry_after_s: float | None) -> None:
        """`settle`, committed with the other settles of this event-loop turn."""
        self._settles.append((name, seq, retry_after_s))
        if self._settled is None:
            self._settled = asyncio.get_running_loop().create_future()
            self._settled.get_loop().call_soon(self._commit_settles)
        await asyncio.shield(self._settled)

    def _commit_settles(self) -> None:
        done, self._settled = self._settled, None
        settles, self._settles = self._settles, []
        if done is None:
            return
        now = self._clock.now()
        try:
            with self._txn() as c:
                c.executemany(
                    "DELETE FROM pending WHERE consumer = ? AND seq = ?",
                    [(name, seq) for name, seq, retry in settles if retry is None],
                )
                c.executemany(
                    "UPDATE pending SET deadline = ? WHERE consumer = ? AND seq = ?",
                    [(now + retry, name, seq) for name, seq, retry in settles if retry is not None],
                )
        except sqlite3.Error as exc:
            done.set_exception(exc)
            return
        done.set_result(None)
        if any(retry is not None for _name, _seq, retry in settles):
            self._wake()

    def now(self) -> float:
        return self._clock.now()

    def appended(self) -> asyncio.Event:
        return self._appended

    def data_version(self) -> int:
        """Changes whenever another connection (another process) has committed to the file."""
        self._flush()
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(version)

    def close(self) -> None:
        self._commit_settles()
        self._flush()
        self._wake()
        self._db.close()


@dataclass(eq=False)
class EmbeddedMessage:
    _log: DurableLog
    _consumer: str
    seq: int
    delivery_count: int
    subject: str
    data: bytes
    msg_id: str
    _settled: bool = False

    async def ack(self) -> None:
        await self._settle(None)

    async def nak(self, delay_s: float = 0.0) -> None:
        await self._settle(max(delay_s, 0.0))

    async def _settle(self, retry_after_s: float | None) -> None:
        if not self._settled:
            self._settled = True
            await self._log.settle_grouped(self._consumer, self.seq, retry_after_s)


class EmbeddedConsumer:
    def __init__(self, log: DurableLog, name: str, filters: str, ack_wait_s: float) -> None:
        self._log = log
        self._name = name
        self._filters = filters
        self._ack_wait_s = ack_wait_s

    @property
    def name(self) -> str:
        return self._name

    async def fetch(self, batch: int = 100, timeout_s: float = 1.0) -> list[EmbeddedMessage]:
        check_fetch_args(batch, timeout_s)
        log = self._log
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while True:
            # Both before reading, so no append (of this process or another) is missed.
            appended = log.appended()
            version = log.data_version() if log.poll_s is not None else 0
            taken = log.take(self._name, self._filters, self._ack_wait_s, batch)
            if taken:
                return taken
            if not await self._wait(appended, version, until):
                return []

    async def _wait(self, appended: asyncio.Event, version: int, until: float) -> bool:
        """Waits until there may be something to take (True) or `until` passes (False)."""
        log = self._log
        loop = asyncio.get_running_loop()
        while True:
            wait = until - loop.time()
            if wait <= 0:
                return False
            deadline = log.next_deadline(self._name)
            if deadline is not None:
                # Wake for the earliest redelivery too (on a real clock; a manual one moves
                # only between fetches).
                wait = min(wait, max(deadline - log.now(), 0.001))
            if log.poll_s is not None:
                wait = min(wait, log.poll_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await appended.wait()
                    return True
            if deadline is not None and log.now() >= deadline:
                return True
            if log.poll_s is not None and log.data_version() != version:
                return True

    async def close(self) -> None:
        """Nothing to release: the position and pending deliveries are in the log."""
