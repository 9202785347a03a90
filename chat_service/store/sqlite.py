"""The embedded chat store: one SQLite file in WAL mode, written with group commit.

Every write is a job for one writer thread. The thread takes all jobs waiting, runs them in one
transaction (each inside its own savepoint, so one failing job does not sink the others), commits
with `synchronous=FULL` (the WAL is fsynced before COMMIT returns), and only then resolves the
callers' futures. Many concurrent sends thus share one fsync, and an acknowledged write has always
reached the disk. Because a single thread writes, seq assignment is serial and gapless.

Reads use a separate connection on the event loop's thread: WAL readers never wait for the writer,
and point reads are cheaper inline than a hop to a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from chatmesh_common.metrics import STORE_BATCH_SIZE, STORE_TXN_SECONDS

from .base import (
    AppendResult,
    ConflictError,
    ConversationRecord,
    EventKind,
    EventRecord,
    Kind,
    MemberRecord,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    NotFoundError,
    NotMemberError,
    OutboxEntry,
    Role,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 2

_SCHEMA = """
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
"""

_MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender_id, created_at, kind, body, attachments,"
    " reply_to_seq, version, edited_at, deleted, client_msg_id"
)
_MEMBER_COLUMNS = (
    "conversation_id, user_id, role, joined_at, last_read_seq, last_delivered_seq, muted"
)
_CONVERSATION_COLUMNS = (
    "conversation_id, kind, title, created_by, created_at, last_seq, member_count, archived,"
    " updated_at, first_seq"
)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def _message(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        conversation_id=row[0],
        seq=row[1],
        message_id=row[2],
        sender_id=row[3],
        created_at=row[4],
        kind=row[5],
        body=row[6],
        attachments=tuple(json.loads(row[7])) if row[7] != "[]" else (),
        reply_to_seq=row[8],
        version=row[9],
        edited_at=row[10],
        deleted=bool(row[11]),
        client_msg_id=row[12],
    )


def _member(row: Sequence[Any]) -> MemberRecord:
    return MemberRecord(
        conversation_id=row[0],
        user_id=row[1],
        role=Role(row[2]),
        joined_at=row[3],
        last_read_seq=row[4],
        last_delivered_seq=row[5],
        muted=bool(row[6]),
    )


def _conversation(row: Sequence[Any]) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row[0],
        kind=Kind(row[1]),
        title=row[2],
        created_by=row[3],
        created_at=row[4],
        last_seq=row[5],
        member_count=row[6],
        archived=bool(row[7]),
        updated_at=row[8],
        first_seq=row[9],
    )


_Job = tuple[str, Callable[[sqlite3.Connection], Any], Future[Any]]


class _GroupCommitWriter:
    """The one thread that writes: batches queued jobs into one transaction and one fsync."""

    def __init__(self, path: str, max_batch: int = 512) -> None:
        self._path = path
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    async def submit(self, name: str, job: Callable[[sqlite3.Connection], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((name, job, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        try:
            self._conn = _connect(self._path)
        except BaseException as exc:  # surfaced to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        conn = self._conn
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            # A caller that was cancelled while its job waited gets nothing run; once running,
            # a job can no longer be cancelled, so setting its result below cannot fail.
            batch = [job for job in batch if job[2].set_running_or_notify_cancel()]
            if batch:
                self._commit(conn, batch)
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for name, job, future in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((future, None, exc))
                    log.debug("store job %s refused: %s", name, exc)
                else:
                    outcomes.append((future, result, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction as a whole failed (disk full, I/O error): nothing of it is durable.
            log.exception("group commit of %d jobs failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _name, _job, future in batch:
                future.set_exception(exc)
            return
        STORE_TXN_SECONDS.labels(batch[0][0] if len(batch) == 1 else "group_commit").observe(
            time.perf_counter() - started
        )
        STORE_BATCH_SIZE.observe(len(batch))
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class SqliteChatStore:
    """ChatStore on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._writer = _GroupCommitWriter(self._path)
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        setup = _connect(self._path)
        try:
            setup.executescript(_SCHEMA)
            row = setup.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                setup.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self._path} has schema version {row[0]}; this build knows {SCHEMA_VERSION}"
                )
            elif row[0] < SCHEMA_VERSION:
                self._upgrade(setup, row[0])
        finally:
            setup.close()
        self._writer.start()
        self._reader = _connect(self._path)

    @staticmethod
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

    async def close(self) -> None:
        await asyncio.to_thread(self._writer.stop)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def _r(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    # Conversations

    async def create_conversation(self, new: NewConversation) -> tuple[ConversationRecord, bool]:
        def job(conn: sqlite3.Connection) -> tuple[ConversationRecord, bool]:
            if new.direct_key:
                row = conn.execute(
                    f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE direct_key = ?",
                    (new.direct_key,),
                ).fetchone()
                if row is not None:
                    return _conversation(row), False
            conn.execute(
                "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at,"
                " last_seq, member_count, archived, updated_at, direct_key)"
                " VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?, ?)",
                (
                    new.conversation_id,
                    int(new.kind),
                    new.title,
                    new.created_by,
                    new.created_at,
                    len(new.members),
                    new.created_at,
                    new.direct_key or None,
                ),
            )
            conn.executemany(
                f"INSERT INTO members ({_MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, 0, 0, 0)",
                [(new.conversation_id, u, int(r), new.created_at) for u, r in new.members],
            )
            return (
                ConversationRecord(
                    conversation_id=new.conversation_id,
                    kind=new.kind,
                    title=new.title,
                    created_by=new.created_by,
                    created_at=new.created_at,
                    last_seq=0,
                    member_count=len(new.members),
                    archived=False,
                    updated_at=new.created_at,
                ),
                True,
            )

        return await self._writer.submit("create_conversation", job)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        row = self._r.execute(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()
        return _conversation(row) if row else None

    async def update_conversation(
        self, conversation_id: str, title: str | None, archived: bool | None, at: float
    ) -> ConversationRecord:
        def job(conn: sqlite3.Connection) -> ConversationRecord:
            if title is not None:
                conn.execute(
                    "UPDATE conversations SET title = ? WHERE conversation_id = ?",
                    (title, conversation_id),
                )
            if archived is not None:
                conn.execute(
                    "UPDATE conversations SET archived = ? WHERE conversation_id = ?",
                    (int(archived), conversation_id),
                )
            row = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            return _conversation(row)

        return await self._writer.submit("update_conversation", job)

    # Members

    async def get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None:
        row = self._r.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE conversation_id = ? AND user_id = ?",
            (conversation_id, user_id),
        ).fetchone()
        return _member(row) if row else None

    async def list_members(
        self, conversation_id: str, after_user_id: str, limit: int
    ) -> list[MemberRecord]:
        rows = self._r.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE conversation_id = ? AND user_id > ?"
            " ORDER BY user_id LIMIT ?",
            (conversation_id, after_user_id, limit),
        ).fetchall()
        return [_member(r) for r in rows]

    async def member_ids(self, conversation_id: str) -> list[str]:
        rows = self._r.execute(
            "SELECT user_id FROM members WHERE conversation_id = ?", (conversation_id,)
        ).fetchall()
        return [r[0] for r in rows]

    async def user_conversations(self, user_id: str) -> list[MemberRecord]:
        rows = self._r.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE user_id = ?", (user_id,)
        ).fetchall()
        return [_member(r) for r in rows]

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        def job(conn: sqlite3.Connection) -> list[EventRecord]:
            events: list[EventRecord] = []
            for change in changes:
                present = conn.execute(
                    "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?",
                    (conversation_id, change.user_id),
                ).fetchone()
                if change.kind == EventKind.MEMBER_ADDED:
                    if present is not None:
                        continue
                    role = change.role or Role.MEMBER
                    conn.execute(
                        f"INSERT INTO members ({_MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                        (conversation_id, change.user_id, int(role), at, 0, 0),
                    )
                    delta = 1
                elif change.kind in (EventKind.MEMBER_REMOVED, EventKind.MEMBER_LEFT):
                    if present is None:
                        continue
                    role = None
                    conn.execute(
                        "DELETE FROM members WHERE conversation_id = ? AND user_id = ?",
                        (conversation_id, change.user_id),
                    )
                    delta = -1
                elif change.kind == EventKind.MEMBER_ROLE_CHANGED:
                    if present is None:
                        raise NotFoundError(f"{change.user_id} is not a member")
                    role = change.role or Role.MEMBER
                    if present[0] == int(role):
                        continue
                    conn.execute(
                        "UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?",
                        (int(role), conversation_id, change.user_id),
                    )
                    delta = 0
                else:
                    raise ValueError(f"not a membership change: {change.kind!r}")
                seq, member_count = self._take_seq(conn, conversation_id, at, delta)
                conn.execute(
                    "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at,"
                    " member_user_id, member_role) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        conversation_id,
                        seq,
                        int(change.kind),
                        actor_id,
                        at,
                        change.user_id,
                        int(role) if role else 0,
                    ),
                )
                if delta > 0:
                    # A new member has read nothing before joining: history before it is not unread.
                    conn.execute(
                        "UPDATE members SET last_read_seq = ?, last_delivered_seq = ?"
                        " WHERE conversation_id = ? AND user_id = ?",
                        (seq, seq, conversation_id, change.user_id),
                    )
                events.append(
                    EventRecord(
                        conversation_id=conversation_id,
                        seq=seq,
                        kind=change.kind,
                        actor_id=actor_id,
                        occurred_at=at,
                        member_user_id=change.user_id,
                        member_role=role,
                        member_count=member_count,
                    )
                )
            return events

        return await self._writer.submit("change_members", job)

    async def set_muted(self, conversation_id: str, user_id: str, muted: bool) -> MemberRecord:
        def job(conn: sqlite3.Connection) -> MemberRecord:
            conn.execute(
                "UPDATE members SET muted = ? WHERE conversation_id = ? AND user_id = ?",
                (int(muted), conversation_id, user_id),
            )
            return self._member_in(conn, conversation_id, user_id)

        return await self._writer.submit("set_muted", job)

    # Messages and the log

    @staticmethod
    def _take_seq(
        conn: sqlite3.Connection, conversation_id: str, at: float, delta: int = 0
    ) -> tuple[int, int]:
        """The next seq and the member count after `delta`; records the seq in the outbox.

        The outbox row is written in the same transaction as the event, so the relay learns
        of every committed event even if this process dies before publishing it.
        """
        row = conn.execute(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ?,"
            " member_count = member_count + ? WHERE conversation_id = ?"
            " RETURNING last_seq, member_count",
            (at, delta, conversation_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"conversation {conversation_id} not found")
        seq = int(row[0])
        conn.execute(
            "INSERT INTO outbox (conversation_id, from_seq, up_to_seq) VALUES (?, ?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET up_to_seq = excluded.up_to_seq",
            (conversation_id, seq, seq),
        )
        return seq, int(row[1])

    @classmethod
    def _next_seq(
        cls, conn: sqlite3.Connection, conversation_id: str, at: float, delta: int = 0
    ) -> int:
        return cls._take_seq(conn, conversation_id, at, delta)[0]

    @staticmethod
    def _require_member(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> None:
        row = conn.execute(
            "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?",
            (conversation_id, user_id),
        ).fetchone()
        if row is None:
            raise NotMemberError(f"not a member of conversation {conversation_id}")

    @staticmethod
    def _member_in(conn: sqlite3.Connection, conversation_id: str, user_id: str) -> MemberRecord:
        row = conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE conversation_id = ? AND user_id = ?",
            (conversation_id, user_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"{user_id} is not a member of {conversation_id}")
        return _member(row)

    async def append_message(self, new: NewMessage) -> AppendResult:
        def job(conn: sqlite3.Connection) -> AppendResult:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE conversation_id = ? AND sender_id = ? AND client_msg_id = ?",
                (new.conversation_id, new.sender_id, new.client_msg_id),
            ).fetchone()
            if row is not None:
                return AppendResult(_message(row), duplicate=True)
            self._require_member(conn, new.conversation_id, new.sender_id)
            seq = self._next_seq(conn, new.conversation_id, new.created_at)
            conn.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, 0, ?)",
                (
                    new.conversation_id,
                    seq,
                    new.message_id,
                    new.sender_id,
                    new.created_at,
                    new.kind,
                    new.body,
                    json.dumps(list(new.attachments)),
                    new.reply_to_seq,
                    new.client_msg_id,
                ),
            )
            conn.execute(
                "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at,"
                " message_seq) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    new.conversation_id,
                    seq,
                    int(EventKind.MESSAGE_CREATED),
                    new.sender_id,
                    new.created_at,
                    seq,
                ),
            )
            # The sender has read everything up to their own message.
            conn.execute(
                "UPDATE members SET last_read_seq = MAX(last_read_seq, ?),"
                " last_delivered_seq = MAX(last_delivered_seq, ?)"
                " WHERE conversation_id = ? AND user_id = ?",
                (seq, seq, new.conversation_id, new.sender_id),
            )
            message = MessageRecord(
                conversation_id=new.conversation_id,
                seq=seq,
                message_id=new.message_id,
                sender_id=new.sender_id,
                created_at=new.created_at,
                kind=new.kind,
                body=new.body,
                attachments=new.attachments,
                reply_to_seq=new.reply_to_seq,
                version=1,
                edited_at=None,
                deleted=False,
                client_msg_id=new.client_msg_id,
            )
            return AppendResult(message, duplicate=False)

        return await self._writer.submit("append_message", job)

    def _change_message(
        self,
        conn: sqlite3.Connection,
        conversation_id: str,
        seq: int,
        actor_id: str,
        at: float,
        kind: EventKind,
        body: str | None,
    ) -> EventRecord:
        self._require_member(conn, conversation_id, actor_id)
        row = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq = ?",
            (conversation_id, seq),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"message {seq} not found")
        if row[11]:
            raise ConflictError(f"message {seq} is deleted")
        if kind == EventKind.MESSAGE_EDITED:
            conn.execute(
                "UPDATE messages SET body = ?, version = version + 1, edited_at = ?"
                " WHERE conversation_id = ? AND seq = ?",
                (body, at, conversation_id, seq),
            )
        else:
            conn.execute(
                "UPDATE messages SET body = '', attachments = '[]', deleted = 1"
                " WHERE conversation_id = ? AND seq = ?",
                (conversation_id, seq),
            )
        event_seq = self._next_seq(conn, conversation_id, at)
        conn.execute(
            "INSERT INTO events (conversation_id, seq, kind, actor_id, occurred_at, message_seq)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, event_seq, int(kind), actor_id, at, seq),
        )
        updated = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq = ?",
            (conversation_id, seq),
        ).fetchone()
        return EventRecord(
            conversation_id=conversation_id,
            seq=event_seq,
            kind=kind,
            actor_id=actor_id,
            occurred_at=at,
            message=_message(updated),
        )

    async def edit_message(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        return await self._writer.submit(
            "edit_message",
            lambda conn: self._change_message(
                conn, conversation_id, seq, actor_id, at, EventKind.MESSAGE_EDITED, body
            ),
        )

    async def delete_message(
        self, conversation_id: str, seq: int, actor_id: str, at: float
    ) -> EventRecord:
        return await self._writer.submit(
            "delete_message",
            lambda conn: self._change_message(
                conn, conversation_id, seq, actor_id, at, EventKind.MESSAGE_DELETED, None
            ),
        )

    async def get_message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        row = self._r.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq = ?",
            (conversation_id, seq),
        ).fetchone()
        return _message(row) if row else None

    async def history(
        self, conversation_id: str, before_seq: int, after_seq: int, limit: int
    ) -> list[MessageRecord]:
        upper = before_seq if before_seq > 0 else (1 << 62)
        order = "ASC" if after_seq > 0 and before_seq == 0 else "DESC"
        rows = self._r.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
            f" AND seq > ? AND seq < ? ORDER BY seq {order} LIMIT ?",
            (conversation_id, after_seq, upper, limit),
        ).fetchall()
        return [_message(r) for r in rows]

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[EventRecord]:
        columns = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
        rows = self._r.execute(
            "SELECT e.seq, e.kind, e.actor_id, e.occurred_at, e.member_user_id, e.member_role,"
            f" e.message_seq, {columns} FROM events e LEFT JOIN messages m"
            " ON m.conversation_id = e.conversation_id AND m.seq = e.message_seq"
            " WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
            (conversation_id, after_seq, limit),
        ).fetchall()
        events = []
        for row in rows:
            events.append(
                EventRecord(
                    conversation_id=conversation_id,
                    seq=row[0],
                    kind=EventKind(row[1]),
                    actor_id=row[2],
                    occurred_at=row[3],
                    member_user_id=row[4],
                    member_role=Role(row[5]) if row[5] else None,
                    # An edit or delete of a message purged by retention: no message.
                    message=_message(row[7:]) if row[6] and row[7] is not None else None,
                )
            )
        return events

    # The outbox

    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        rows = self._r.execute(
            "SELECT conversation_id, from_seq, up_to_seq FROM outbox LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxEntry(r[0], r[1], r[2]) for r in rows]

    async def outbox_entry(self, conversation_id: str) -> OutboxEntry | None:
        row = self._r.execute(
            "SELECT conversation_id, from_seq, up_to_seq FROM outbox WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()
        return OutboxEntry(row[0], row[1], row[2]) if row else None

    async def clear_outbox(self, relayed: Sequence[tuple[str, int]]) -> None:
        if not relayed:
            return

        def job(conn: sqlite3.Connection) -> None:
            for conversation_id, up_to_seq in relayed:
                conn.execute(
                    "DELETE FROM outbox WHERE conversation_id = ? AND up_to_seq <= ?",
                    (conversation_id, up_to_seq),
                )
                conn.execute(
                    "UPDATE outbox SET from_seq = MAX(from_seq, ? + 1) WHERE conversation_id = ?",
                    (up_to_seq, conversation_id),
                )

        await self._writer.submit("clear_outbox", job)

    # Retention

    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        """One writer job: the conversations of `kind` whose log starts with an event older
        than `before`, oldest first; per conversation the expired run from first_seq, up to
        `limit` messages in all. Rows below the new horizon go in the same transaction that
        moves first_seq, so readers never see a half-purged log."""
        if limit <= 0:
            return 0

        def job(conn: sqlite3.Connection) -> int:
            candidates = conn.execute(
                "SELECT conversation_id, first_seq, last_seq FROM ("
                " SELECT c.conversation_id, c.first_seq, c.last_seq,"
                "  (SELECT e.occurred_at FROM events e WHERE e.conversation_id = c.conversation_id"
                "   AND e.seq >= c.first_seq ORDER BY e.seq LIMIT 1) AS oldest"
                " FROM conversations c WHERE c.kind = ? AND c.first_seq <= c.last_seq)"
                " WHERE oldest < ? ORDER BY oldest",
                (int(kind), before),
            ).fetchall()
            removed = 0
            for conversation_id, first_seq, last_seq in candidates:
                if removed >= limit:
                    break
                horizon = last_seq + 1
                cursor = conn.execute(
                    "SELECT seq, kind, occurred_at FROM events"
                    " WHERE conversation_id = ? AND seq >= ? ORDER BY seq",
                    (conversation_id, first_seq),
                )
                for seq, event_kind, occurred_at in cursor:
                    if occurred_at >= before:
                        horizon = seq
                        break
                    if event_kind == EventKind.MESSAGE_CREATED:
                        if removed >= limit:
                            horizon = seq
                            break
                        removed += 1
                cursor.close()
                conn.execute(
                    "DELETE FROM messages WHERE conversation_id = ? AND seq < ?",
                    (conversation_id, horizon),
                )
                conn.execute(
                    "DELETE FROM events WHERE conversation_id = ? AND seq < ?",
                    (conversation_id, horizon),
                )
                conn.execute(
                    "UPDATE conversations SET first_seq = MAX(first_seq, ?)"
                    " WHERE conversation_id = ?",
                    (horizon, conversation_id),
                )
            return removed

        return await self._writer.submit("purge_expired", job)

    # Receipts and unread

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        def job(conn: sqlite3.Connection) -> MemberRecord:
            conn.execute(
                "UPDATE members SET last_read_seq = MAX(last_read_seq, ?),"
                " last_delivered_seq = MAX(last_delivered_seq, ?)"
                " WHERE conversation_id = ? AND user_id = ?",
                (seq, seq, conversation_id, user_id),
            )
            return self._member_in(conn, conversation_id, user_id)

        return await self._writer.submit("mark_read", job)

    async def mark_delivered(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        def job(conn: sqlite3.Connection) -> MemberRecord:
            conn.execute(
                "UPDATE members SET last_delivered_seq = MAX(last_delivered_seq, ?)"
                " WHERE conversation_id = ? AND user_id = ?",
                (seq, conversation_id, user_id),
            )
            return self._member_in(conn, conversation_id, user_id)

        return await self._writer.submit("mark_delivered", job)

    async def count_unread(self, conversation_id: str, user_id: str, after_seq: int) -> int:
        row = self._r.execute(
            "SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND seq > ?"
            " AND sender_id <> ? AND deleted = 0",
            (conversation_id, after_seq, user_id),
        ).fetchone()
        return int(row[0])

    # Blocks

    async def set_block(self, user_id: str, blocked_user_id: str, blocked: bool) -> None:
        def job(conn: sqlite3.Connection) -> None:
            if blocked:
                conn.execute(
                    "INSERT OR IGNORE INTO blocks (user_id, blocked_user_id, created_at)"
                    " VALUES (?, ?, ?)",
                    (user_id, blocked_user_id, time.time()),
                )
            else:
                conn.execute(
                    "DELETE FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
                    (user_id, blocked_user_id),
                )

        await self._writer.submit("set_block", job)

    async def is_blocked(self, user_id: str, blocked_user_id: str) -> bool:
        row = self._r.execute(
            "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
            (user_id, blocked_user_id),
        ).fetchone()
        return row is not None

    async def list_blocked(self, user_id: str) -> list[str]:
        rows = self._r.execute(
            "SELECT blocked_user_id FROM blocks WHERE user_id = ? ORDER BY blocked_user_id",
            (user_id,),
        ).fetchall()
        return [r[0] for r in rows]
