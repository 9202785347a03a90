"""The embedded NotifyStore: one SQLite file, one connection, each write one transaction.

Only one notify_service may deliver from a file (it is the embedded mode): on open, pushes a
killed process left `inflight` are queued again, so a push the provider never accepted is
retried. Another process may open the file with `recover_inflight=False` to serve the registry
(`chatmesh dev` serves NotifyService beside chat while its consumer worker delivers).
A push the provider accepted just before the kill (before `sent` was written) is sent again:
that window is the one place a push can repeat, and the push's collapse key makes the device
replace the first copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..providers.base import Platform, PushMessage, PushTarget
from .base import (
    ConversationSetting,
    DeadLetterRecord,
    DeviceRecord,
    EnqueueResult,
    Level,
    NewPush,
    Preview,
    PushKind,
    QueuedPush,
    State,
    UserSettings,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    keys TEXT NOT NULL,
    app_id TEXT NOT NULL,
    registered_at REAL NOT NULL,
    last_push_at REAL,
    PRIMARY KEY (user_id, device_id),
    UNIQUE (platform, token)
);
CREATE TABLE IF NOT EXISTS user_settings (
    user_id TEXT PRIMARY KEY,
    preview INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_settings (
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    level INTEGER NOT NULL,
    muted_until REAL,
    muted_forever INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE TABLE IF NOT EXISTS push_queue (
    push_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    event_at REAL NOT NULL,
    not_before REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL DEFAULT 1,
    UNIQUE (user_id, device_id, conversation_id, seq, kind)
);
CREATE INDEX IF NOT EXISTS push_due ON push_queue (state, not_before);
CREATE INDEX IF NOT EXISTS push_by_seq ON push_queue (conversation_id, seq);
CREATE TABLE IF NOT EXISTS sent (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id, seq, kind)
);
CREATE INDEX IF NOT EXISTS sent_by_seq ON sent (conversation_id, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id INTEGER PRIMARY KEY,
    push_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    pending INTEGER NOT NULL DEFAULT 1
);
"""

_PUSH_COLUMNS = (
    "push_id, user_id, device_id, conversation_id, seq, kind, message, event_at, not_before,"
    " attempts, state, last_error, count"
)
_DEAD_COLUMNS = (
    "dead_letter_id, push_id, user_id, device_id, platform, conversation_id, seq, kind, attempts,"
    " last_error, failed_at, pending"
)


def encode_message(message: PushMessage) -> str:
    return json.dumps(
        {
            "title": message.title,
            "body": message.body,
            "data": dict(message.data),
            "badge": message.badge,
            "collapse_key": message.collapse_key,
            "silent": message.silent,
            "high_priority": message.high_priority,
            "ttl_s": message.ttl_s,
        }
    )


def decode_message(raw: str) -> PushMessage:
    fields: dict[str, Any] = json.loads(raw)
    return PushMessage(**fields)


def _with_count(message: PushMessage, count: int) -> PushMessage:
    data = {**message.data, "count": str(count)}
    return PushMessage(
        title=message.title,
        body=message.body,
        data=data,
        badge=message.badge,
        collapse_key=message.collapse_key,
        silent=message.silent,
        high_priority=message.high_priority,
        ttl_s=message.ttl_s,
    )


def _device(row: sqlite3.Row | tuple[Any, ...]) -> DeviceRecord:
    user_id, device_id, platform, token, keys, app_id, registered_at = row
    target = PushTarget(Platform(platform), token, json.loads(keys), app_id)
    return DeviceRecord(user_id, device_id, target, registered_at)


def _push(row: tuple[Any, ...]) -> QueuedPush:
    (push_id, user_id, device_id, conversation_id, seq, kind, message, event_at, not_before,
     attempts, state, last_error, count) = row  # fmt: skip
    return QueuedPush(
        push_id=push_id,
        user_id=user_id,
        device_id=device_id,
        conversation_id=conversation_id,
        seq=seq,
        kind=PushKind(kind),
        message=decode_message(message),
        event_at=event_at,
        not_before=not_before,
        attempts=attempts,
        state=State(state),
        last_error=last_error,
        count=count,
    )


def _dead(row: tuple[Any, ...]) -> DeadLetterRecord:
    (dead_letter_id, push_id, user_id, device_id, platform, conversation_id, seq, kind, attempts,
     last_error, failed_at, pending) = row  # fmt: skip
    return DeadLetterRecord(
        dead_letter_id=dead_letter_id,
        push_id=push_id,
        user_id=user_id,
        device_id=device_id,
        platform=Platform(platform),
        conversation_id=conversation_id,
        seq=seq,
        kind=PushKind(kind),
        attempts=attempts,
        last_error=last_error,
        failed_at=failed_at,
        pending=bool(pending),
    )


def _setting(row: tuple[Any, ...]) -> ConversationSetting:
    conversation_id, level, muted_until, muted_forever = row
    return ConversationSetting(conversation_id, Level(level), muted_until, bool(muted_forever))


class SqliteNotifyStore:
    def __init__(self, path: str = ":memory:", *, recover_inflight: bool = True) -> None:
        self._path = path
        self._recover_inflight = recover_inflight
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "the notify store is not open"
        return self._db

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[sqlite3.Connection]:
        """One transaction, committed when the block ends (rolled back if it raises)."""
        async with self._lock:
            with self.db as db:
                yield db

    async def open(self) -> None:
        self._db = sqlite3.connect(self._path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if not self._recover_inflight:
            return
        with self._db:
            self._db.execute(
                "UPDATE push_queue SET state=? WHERE state=?", (State.QUEUED, State.INFLIGHT)
            )

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- devices -----------------------------------------------------------------------------

    async def register_device(
        self, user_id: str, device_id: str, target: PushTarget, now: float
    ) -> DeviceRecord:
        async with self._write() as db:
            db.execute(
                "DELETE FROM devices WHERE platform=? AND token=?"
                " AND NOT (user_id=? AND device_id=?)",
                (target.platform.value, target.token, user_id, device_id),
            )
            db.execute(
                "INSERT INTO devices (user_id, device_id, platform, token, keys, app_id,"
                " registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET platform=excluded.platform,"
                " token=excluded.token, keys=excluded.keys, app_id=excluded.app_id,"
                " registered_at=excluded.registered_at",
                (
                    user_id,
                    device_id,
                    target.platform.value,
                    target.token,
                    json.dumps(dict(target.keys), sort_keys=True),
                    target.app_id,
                    now,
                ),
            )
        return DeviceRecord(user_id, device_id, target, now)

    async def unregister_device(self, user_id: str, device_id: str) -> bool:
        async with self._write() as db:
            cur = db.execute(
                "DELETE FROM devices WHERE user_id=? AND device_id=?", (user_id, device_id)
            )
            return cur.rowcount > 0

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        async with self._lock:
            rows = self.db.execute(
                "SELECT user_id, device_id, platform, token, keys, app_id, registered_at"
                " FROM devices WHERE user_id=? ORDER BY device_id",
                (user_id,),
            ).fetchall()
        return [_device(r) for r in rows]

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[DeviceRecord]]:
        wanted = list(dict.fromkeys(user_ids))
        out: dict[str, list[DeviceRecord]] = {}
        async with self._lock:
            # SQLite's default limit is 999 bound parameters per statement.
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = self.db.execute(
                    "SELECT user_id, device_id, platform, token, keys, app_id, registered_at"
                    f" FROM devices WHERE user_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY user_id, device_id",
                    chunk,
                ).fetchall()
                for row in rows:
                    device = _device(row)
                    out.setdefault(device.user_id, []).append(device)
        return out

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        async with self._lock:
            row = self.db.execute(
                "SELECT user_id, device_id, platform, token, keys, app_id, registered_at"
                " FROM devices WHERE user_id=? AND device_id=?",
                (user_id, device_id),
            ).fetchone()
        return _device(row) if row else None

    async def remove_target(self, user_id: str, device_id: str, token: str) -> bool:
        async with self._write() as db:
            cur = db.execute(
                "DELETE FROM devices WHERE user_id=? AND device_id=? AND token=?",
                (user_id, device_id, token),
            )
            db.execute(
                "UPDATE push_queue SET state=? WHERE user_id=? AND device_id=? AND state=?",
                (State.GONE, user_id, device_id, State.QUEUED),
            )
            return cur.rowcount > 0

    # -- settings ----------------------------------------------------------------------------

    def _settings(self, user_id: str) -> UserSettings:
        row = self.db.execute(
            "SELECT preview FROM user_settings WHERE user_id=?", (user_id,)
        ).fetchone()
        rows = self.db.execute(
            "SELECT conversation_id, level, muted_until, muted_forever FROM conversation_settings"
            " WHERE user_id=? ORDER BY conversation_id",
            (user_id,),
        ).fetchall()
        preview = Preview(row[0]) if row else Preview.FULL
        return UserSettings(preview, tuple(_setting(r) for r in rows))

    async def get_settings(self, user_id: str) -> UserSettings:
        async with self._lock:
            return self._settings(user_id)

    async def update_settings(
        self,
        user_id: str,
        preview: Preview | None,
        conversations: Sequence[ConversationSetting],
    ) -> UserSettings:
        async with self._write() as db:
            if preview is not None:
                db.execute(
                    "INSERT INTO user_settings (user_id, preview) VALUES (?, ?)"
                    " ON CONFLICT (user_id) DO UPDATE SET preview=excluded.preview",
                    (user_id, int(preview)),
                )
            for c in conversations:
                if c.is_default:
                    db.execute(
                        "DELETE FROM conversation_settings WHERE user_id=? AND conversation_id=?",
                        (user_id, c.conversation_id),
                    )
                    continue
                db.execute(
                    "INSERT INTO conversation_settings (user_id, conversation_id, level,"
                    " muted_until, muted_forever) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (user_id, conversation_id) DO UPDATE SET"
                    " level=excluded.level, muted_until=excluded.muted_until,"
                    " muted_forever=excluded.muted_forever",
                    (
                        user_id,
                        c.conversation_id,
                        int(c.level),
                        c.muted_until,
                        int(c.muted_forever),
                    ),
                )
        async with self._lock:
            return self._settings(user_id)

    async def settings_for(
        self, user_ids: Sequence[str], conversation_id: str
    ) -> dict[str, tuple[Preview, ConversationSetting]]:
        wanted = list(dict.fromkeys(user_ids))
        previews: dict[str, Preview] = {}
        settings: dict[str, ConversationSetting] = {}
        async with self._lock:
            # SQLite's default limit is 999 bound parameters per statement.
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for user_id, preview in self.db.execute(
                    f"SELECT user_id, preview FROM user_settings WHERE user_id IN ({marks})",
                    chunk,
                ):
                    previews[user_id] = Preview(preview)
                for user_id, *row in self.db.execute(
                    "SELECT user_id, conversation_id, level, muted_until, muted_forever"
                    f" FROM conversation_settings WHERE conversation_id=? AND user_id IN ({marks})",
                    [conversation_id, *chunk],
                ):
                    settings[user_id] = _setting(tuple(row))
        return {
            user_id: (
                previews.get(user_id, Preview.FULL),
                settings.get(user_id) or ConversationSetting(conversation_id),
            )
            for user_id in user_ids
        }

    # -- the queue ---------------------------------------------------------------------------

    async def enqueue(self, pushes: Sequence[NewPush], min_interval_s: float) -> EnqueueResult:
        # A call holds one event's pushes (one conversation and seq): what it must know of the
        # queue, the sent set and the devices is read with a few queries for the whole call,
        # not several per push.
        queued = repeated = coalesced = 0
        async with self._write() as db:
            known = self._known_keys(db, pushes)
            waiting = self._waiting_messages(db, pushes)
            last_push = self._last_push_at(db, pushes)
            for push in pushes:
                key = (push.user_id, push.device_id, push.conversation_id, push.seq, push.kind)
                if key in known:
                    repeated += 1
                    continue
                known.add(key)
                not_before = push.not_before
                count = 1
                slot = (push.user_id, push.device_id, push.conversation_id)
                rows = waiting.get(slot) if push.kind is PushKind.MESSAGE else None
                if rows:
                    # The newest waiting push of the device and conversation gives way.
                    earlier = max(rows, key=lambda r: r[3])
                    rows.remove(earlier)
                    earlier_id, not_before, earlier_count, _ = earlier
                    count = earlier_count + 1
                    db.execute(
                        "UPDATE push_queue SET state=? WHERE push_id=?",
                        (State.COALESCED, earlier_id),
                    )
                    coalesced += 1
                else:
                    last = last_push.get((push.user_id, push.device_id))
                    if last is not None:
                        not_before = max(not_before, last + min_interval_s)
                message = _with_count(push.message, count) if count > 1 else push.message
                cur = db.execute(
                    "INSERT INTO push_queue (user_id, device_id, conversation_id, seq, kind,"
                    " message, event_at, not_before, state, count)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, encode_message(message), push.event_at, not_before, State.QUEUED,
                     count),
                )  # fmt: skip
                if push.kind is PushKind.MESSAGE:
                    assert cur.lastrowid is not None
                    waiting.setdefault(slot, []).append(
                        (cur.lastrowid, not_before, count, push.seq)
                    )
                queued += 1
        return EnqueueResult(queued, repeated, coalesced)

    @staticmethod
    def _known_keys(
        db: sqlite3.Connection, pushes: Sequence[NewPush]
    ) -> set[tuple[str, str, str, int, str]]:
        """The keys of the pushes' (conversation, seq) already queued once or sent."""
        known: set[tuple[str, str, str, int, str]] = set()
        for conversation_id, seq in {(p.conversation_id, p.seq) for p in pushes}:
            for table in ("push_queue", "sent"):
                rows = db.execute(
                    f"SELECT user_id, device_id, conversation_id, seq, kind FROM {table}"
                    " WHERE conversation_id=? AND seq=?",
                    (conversation_id, seq),
                )
                known.update((u, d, c, q, PushKind(k)) for u, d, c, q, k in rows)
        return known

    @staticmethod
    def _waiting_messages(
        db: sqlite3.Connection, pushes: Sequence[NewPush]
    ) -> dict[tuple[str, str, str], list[tuple[int, float, int, int]]]:
        """Queued MESSAGE pushes of the pushes' conversations, by (user, device, conversation):
        (push_id, not_before, count, seq) each, the ones a new push coalesces with."""
        waiting: dict[tuple[str, str, str], list[tuple[int, float, int, int]]] = {}
        conversations = {p.conversation_id for p in pushes if p.kind is PushKind.MESSAGE}
        for conversation_id in conversations:
            for user_id, device_id, push_id, not_before, count, seq in db.execute(
                "SELECT user_id, device_id, push_id, not_before, count, seq FROM push_queue"
                " WHERE conversation_id=? AND kind=? AND state=?",
                (conversation_id, PushKind.MESSAGE, State.QUEUED),
            ):
                slot = (user_id, device_id, conversation_id)
                waiting.setdefault(slot, []).append((push_id, not_before, count, seq))
        return waiting

    @staticmethod
    def _last_push_at(
        db: sqlite3.Connection, pushes: Sequence[NewPush]
    ) -> dict[tuple[str, str], float]:
        """When each of the pushes' devices last got a push (absent: never)."""
        users = list(dict.fromkeys(p.user_id for p in pushes))
        last: dict[tuple[str, str], float] = {}
        # SQLite's default limit is 999 bound parameters per statement.
        for start in range(0, len(users), 500):
            chunk = users[start : start + 500]
            for user_id, device_id, at in db.execute(
                "SELECT user_id, device_id, last_push_at FROM devices"
                f" WHERE last_push_at IS NOT NULL AND user_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                last[(user_id, device_id)] = at
        return last

    async def cancel(
        self, conversation_id: str, seq: int, user_id: str | None = None, up_to: bool = False
    ) -> int:
        where = "conversation_id=? AND kind=? AND state=? AND " + ("seq<=?" if up_to else "seq=?")
        args: list[Any] = [conversation_id, PushKind.MESSAGE, State.QUEUED, seq]
        if user_id is not None:
            where += " AND user_id=?"
            args.append(user_id)
        async with self._write() as db:
            cur = db.execute(
                f"UPDATE push_queue SET state=? WHERE {where}", [State.CANCELLED, *args]
            )
            return cur.rowcount

    async def claim(self, now: float, limit: int) -> list[QueuedPush]:
        columns = ", ".join(f"q.{c.strip()}" for c in _PUSH_COLUMNS.split(","))
        async with self._write() as db:
            rows = db.execute(
                f"SELECT {columns}, d.platform, d.token, d.keys, d.app_id FROM push_queue q"
                " LEFT JOIN devices d ON d.user_id=q.user_id AND d.device_id=q.device_id"
                " WHERE q.state=? AND q.not_before<=? ORDER BY q.not_before, q.push_id LIMIT ?",
                (State.QUEUED, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE push_queue SET state=?, attempts=attempts+1 WHERE push_id=?",
                [(State.INFLIGHT, r[0]) for r in rows],
            )
        claimed = []
        for row in rows:
            push = _push(row[:-4])
            platform, token, keys, app_id = row[-4:]
            target = None
            if platform is not None:
                target = PushTarget(Platform(platform), token, json.loads(keys), app_id)
            claimed.append(
                dataclasses.replace(
                    push, attempts=push.attempts + 1, state=State.INFLIGHT, target=target
                )
            )
        return claimed

    async def next_due(self) -> float | None:
        async with self._lock:
            row = self.db.execute(
                "SELECT MIN(not_before) FROM push_queue WHERE state=?", (State.QUEUED,)
            ).fetchone()
        return row[0] if row and row[0] is not None else None

    async def mark_sent(self, push_ids: Sequence[int], now: float) -> None:
        async with self._write() as db:
            for push_id in push_ids:
                row = db.execute(
                    "SELECT user_id, device_id, conversation_id, seq, kind FROM push_queue"
                    " WHERE push_id=?",
                    (push_id,),
                ).fetchone()
                if row is None:
                    continue
                db.execute("UPDATE push_queue SET state=? WHERE push_id=?", (State.SENT, push_id))
                db.execute(
                    "INSERT OR IGNORE INTO sent (user_id, device_id, conversation_id, seq, kind,"
                    " sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (*row, now),
                )
                db.execute(
                    "UPDATE devices SET last_push_at=? WHERE user_id=? AND device_id=?",
                    (now, row[0], row[1]),
                )

    async def retry(self, push_id: int, not_before: float, error: str) -> None:
        async with self._write() as db:
            db.execute(
                "UPDATE push_queue SET state=?, not_before=?, last_error=? WHERE push_id=?",
                (State.QUEUED, not_before, error, push_id),
            )

    async def dead_letter(self, push_id: int, error: str, now: float) -> DeadLetterRecord:
        async with self._write() as db:
            row = db.execute(
                "SELECT q.user_id, q.device_id, COALESCE(d.platform, ''), q.conversation_id,"
                " q.seq, q.kind, q.attempts FROM push_queue q LEFT JOIN devices d"
                " ON d.user_id=q.user_id AND d.device_id=q.device_id WHERE q.push_id=?",
                (push_id,),
            ).fetchone()
            assert row is not None, f"no push {push_id}"
            user_id, device_id, platform, conversation_id, seq, kind, attempts = row
            db.execute(
                "UPDATE push_queue SET state=?, last_error=? WHERE push_id=?",
                (State.DEAD, error, push_id),
            )
            cur = db.execute(
                "INSERT INTO dead_letters (push_id, user_id, device_id, platform,"
                " conversation_id, seq, kind, attempts, last_error, failed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (push_id, user_id, device_id, platform or Platform.WEBHOOK.value,
                 conversation_id, seq, kind, attempts, error, now),
            )  # fmt: skip
            dead_id = cur.lastrowid
        assert dead_id is not None
        return DeadLetterRecord(
            dead_id, push_id, user_id, device_id, Platform(platform or "webhook"),
            conversation_id, seq, PushKind(kind), attempts, error, now,
        )  # fmt: skip

    async def finish(self, push_id: int, state: State, error: str = "") -> None:
        async with self._write() as db:
            db.execute(
                "UPDATE push_queue SET state=?, last_error=? WHERE push_id=?",
                (state, error, push_id),
            )

    async def get_push(self, push_id: int) -> QueuedPush | None:
        async with self._lock:
            row = self.db.execute(
                f"SELECT {_PUSH_COLUMNS} FROM push_queue WHERE push_id=?", (push_id,)
            ).fetchone()
        return _push(row) if row else None

    async def was_sent(
        self, user_id: str, device_id: str, conversation_id: str, seq: int, kind: PushKind
    ) -> bool:
        async with self._lock:
            row = self.db.execute(
                "SELECT 1 FROM sent WHERE user_id=? AND device_id=? AND conversation_id=?"
                " AND seq=? AND kind=?",
                (user_id, device_id, conversation_id, seq, kind),
            ).fetchone()
        return row is not None

    async def pushed_since_clear(self, user_id: str, conversation_id: str) -> bool:
        async with self._lock:
            row = self.db.execute(
                "SELECT MAX(CASE WHEN kind=? THEN push_id END),"
                " MAX(CASE WHEN kind=? AND state IN (?, ?, ?) THEN push_id END)"
                " FROM push_queue WHERE user_id=? AND conversation_id=?",
                (PushKind.CLEAR, PushKind.MESSAGE, State.QUEUED, State.INFLIGHT, State.SENT,
                 user_id, conversation_id),
            ).fetchone()  # fmt: skip
        last_clear, last_message = row if row else (None, None)
        return last_message is not None and (last_clear is None or last_message > last_clear)

    async def purge(self, before: float) -> int:
        done = (State.SENT, State.GONE, State.CANCELLED, State.COALESCED)
        async with self._write() as db:
            queue = db.execute(
                "DELETE FROM push_queue WHERE event_at < ? AND state IN (?, ?, ?, ?)",
                (before, *done),
            ).rowcount
            sent = db.execute("DELETE FROM sent WHERE sent_at < ?", (before,)).rowcount
        return queue + sent

    # -- dead letters ------------------------------------------------------------------------

    async def list_dead_letters(
        self, user_id: str | None, before_id: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        where: list[str] = ["1=1"]
        args: list[Any] = []
        if user_id:
            where.append("user_id=?")
            args.append(user_id)
        if before_id is not None:
            where.append("dead_letter_id<?")
            args.append(before_id)
        async with self._lock:
            rows = self.db.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)}"
                " ORDER BY dead_letter_id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [_dead(r) for r in rows]

    async def replay_dead_letter(self, dead_letter_id: int, now: float) -> DeadLetterRecord | None:
        async with self._write() as db:
            row = db.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE dead_letter_id=?",
                (dead_letter_id,),
            ).fetchone()
            if row is None:
                return None
            dead = _dead(row)
            db.execute(
                "UPDATE dead_letters SET pending=0 WHERE dead_letter_id=?", (dead_letter_id,)
            )
            db.execute(
                "UPDATE push_queue SET state=?, attempts=0, not_before=?, last_error=''"
                " WHERE push_id=? AND state=?",
                (State.QUEUED, now, dead.push_id, State.DEAD),
            )
        return DeadLetterRecord(
            dead.dead_letter_id, dead.push_id, dead.user_id, dead.device_id, dead.platform,
            dead.conversation_id, dead.seq, dead.kind, dead.attempts, dead.last_error,
            dead.failed_at, pending=False,
        )  # fmt: skip
