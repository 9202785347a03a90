"""The cluster chat store: ScyllaDB (or Apache Cassandra) through scylla-driver.

How a conversation's log stays gapless across processes (details and the cost per message in
docs/storage.md):

* The static columns of the conversation's partition in `conversations` are the log head:
  `last_seq`, `member_count`, `updated_at` and `pending`, the JSON of the events of the last
  committed round. A round commits by one LWT, `... SET last_seq = n + k, pending = <events>
  IF last_seq = n`; for appends the same conditional batch inserts the idempotency rows
  `(conversation_id, sender_id, client_msg_id) -> seq` (`IF NOT EXISTS`, TTL'd) in the same
  partition, so claiming a key and winning its seq are one atomic step: no crash window.
* Winning the LWT is the commit. The rows that serve reads (messages, events, members, ...) are
  materialized from the events afterwards by idempotent writes. Before deciding anything against
  the current state, a writer rolls the head forward (materializes `pending` unless the event row of
  `last_seq` exists), so a writer that crashed after its LWT is completed by the next one.
* Materialized cells that events change are written `USING TIMESTAMP <seq>` ("seq timestamps"):
  the event with the higher seq wins whatever order the writes land in, and read/delivered markers
  (written with their own value as timestamp) only ever move forward without an LWT.
* In one process, writes to a conversation go through one committer task that puts every queued
  append into one round (group commit), so concurrent sends cost one LWT per round, not per send.

The driver's calls are callback based; `_run` bridges a ResponseFuture to an asyncio future with
`add_callbacks` and `loop.call_soon_threadsafe` (no thread per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import re
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    StoreError,
)
from .cql_schema import BUCKET_SIZE, OUTBOX_SHARDS, migrate, valid_keyspace

log = logging.getLogger(__name__)

DEFAULT_IDEMPOTENCY_TTL = 2 * 24 * 3600
MAX_APPENDS_PER_ROUND = 64
MAX_ROUND_BYTES = 256 * 1024
MAX_ROUND_ATTEMPTS = 500
# Bound on the per-conversation hints kept in memory (heads, materialized seqs).
MAX_CACHED_CONVERSATIONS = 100_000
# Bound on the senders whose membership is remembered per conversation.
MAX_CACHED_MEMBERS = 10_000
# The side effects of a round go as one (multi-partition, unlogged) batch when they are this
# small: below Cassandra's batch size warning (5 KiB) and far below its refusal (50 KiB), which
# apply only to batches spanning partitions. Bigger rounds go as one batch per partition.
MAX_COMBINED_BATCH_BYTES = 4000
MAX_COMBINED_BATCH_PARTITIONS = 4

_MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender_id, created_at, kind, body, attachments,"
    " reply_to_seq, version, edited_at, deleted, client_msg_id"
)
_CONVERSATION_COLUMNS = (
    "conversation_id, kind, title, created_by, created_at, last_seq, member_count, archived,"
    " updated_at, direct_key, initial_members, pending, first_seq"
)
# Retention: conversations read per scan page, event rows read per page while looking for the
# horizon.
PURGE_SCAN_PAGE = 500
PURGE_EVENTS_PAGE = 1000


def outbox_shard(conversation_id: str) -> int:
    return zlib.crc32(conversation_id.encode()) % OUTBOX_SHARDS


def bucket_of(seq: int) -> int:
    return seq // BUCKET_SIZE


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        conversation_id=row.conversation_id,
        seq=row.seq,
        message_id=row.message_id or "",
        sender_id=row.sender_id or "",
        created_at=row.created_at or 0.0,
        kind=row.kind or 0,
        body=row.body or "",
        attachments=tuple(json.loads(row.attachments)) if row.attachments else (),
        reply_to_seq=row.reply_to_seq or 0,
        version=row.version or 1,
        edited_at=row.edited_at,
        deleted=bool(row.deleted),
        client_msg_id=row.client_msg_id or "",
    )


def _message_from_json(conversation_id: str, m: Mapping[str, Any]) -> MessageRecord:
    return MessageRecord(
        conversation_id=conversation_id,
        seq=m["seq"],
        message_id=m["message_id"],
        sender_id=m["sender_id"],
        created_at=m["created_at"],
        kind=m["kind"],
        body=m["body"],
        attachments=tuple(m["attachments"]),
        reply_to_seq=m["reply_to_seq"],
        version=1,
        edited_at=None,
        deleted=False,
        client_msg_id=m["client_msg_id"],
    )


@dataclass(slots=True)
class _Head:
    conversation: ConversationRecord
    pending: list[dict[str, Any]]


def _head(row: Any) -> _Head | None:
    if row is None or row.kind is None:
        return None
    record = ConversationRecord(
        conversation_id=row.conversation_id,
        kind=Kind(row.kind),
        title=row.title or "",
        created_by=row.created_by or "",
        created_at=row.created_at or 0.0,
        last_seq=row.last_seq or 0,
        member_count=row.member_count or 0,
        archived=bool(row.archived),
        updated_at=row.updated_at or 0.0,
        first_seq=row.first_seq or 1,
    )
    pending = json.loads(row.pending) if row.pending else {}
    return _Head(record, pending.get("events", []) if isinstance(pending, dict) else [])


_KEEPS_MEMBERSHIP = frozenset(
    {EventKind.MESSAGE_CREATED, EventKind.MESSAGE_EDITED, EventKind.MESSAGE_DELETED}
)


@dataclass(slots=True)
class _Op:
    kind: str  # "append" | "members" | "edit" | "delete"
    future: asyncio.Future[Any]
    new: NewMessage | None = None
    actor_id: str = ""
    at: float = 0.0
    changes: Sequence[MembershipChange] = ()
    seq: int = 0
    body: str = ""
    size: int = 0


@dataclass(slots=True)
class _Committer:
    queue: list[_Op] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def _idempotent_only_retry_policy() -> Any:
    """Retries a timed-out or failed request once, and only when running it twice is harmless.

    A lightweight transaction that timed out may or may not have been applied: it is never
    retried by the driver; the store re-reads the conversation head and decides.
    """
    from cassandra.policies import RetryPolicy

    class IdempotentOnlyRetryPolicy(RetryPolicy):  # type: ignore[misc]
        def on_read_timeout(
            self,
            query: Any,
            consistency: Any,
            required_responses: int,
            received_responses: int,
            data_retrieved: bool,
            retry_num: int,
        ) -> tuple[int, Any]:
            if retry_num == 0 and received_responses >= required_responses:
                return self.RETRY, consistency
            return self.RETHROW, None

        def on_write_timeout(
            self,
            query: Any,
            consistency: Any,
            write_type: Any,
            required_responses: int,
            received_responses: int,
            retry_num: int,
        ) -> tuple[int, Any]:
            if retry_num == 0 and getattr(query, "is_idempotent", False):
                return self.RETRY, consistency
            return self.RETHROW, None

        def on_unavailable(
            self,
            query: Any,
            consistency: Any,
            required_replicas: int,
            alive_replicas: int,
            retry_num: int,
        ) -> tuple[int, Any]:
            # Nothing was applied: another coordinator may see more replicas alive.
            return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)

        def on_request_error(
            self, query: Any, consistency: Any, error: Any, retry_num: int
        ) -> tuple[int, Any]:
            if retry_num == 0 and getattr(query, "is_idempotent", False):
                return self.RETRY_NEXT_HOST, None
            return self.RETHROW, None

    return IdempotentOnlyRetryPolicy()


class ScyllaChatStore:
    """ChatStore on a ScyllaDB/Cassandra cluster."""

    def __init__(
        self,
        contact_points: Sequence[str],
        *,
        port: int = 9042,
        local_dc: str = "datacenter1",
        keyspace: str = "chatmesh",
        replication: Mapping[str, Any] | None = None,
        consistency: str = "LOCAL_QUORUM",
        serial_consistency: str = "LOCAL_SERIAL",
        request_timeout: float = 10.0,
        idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL,
        migrate_on_open: bool = True,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        if idempotency_ttl < 24 * 3600:
            raise ValueError("idempotency_ttl must be at least 24 h")
        self._contact_points = list(contact_points)
        self._port = port
        self._local_dc = local_dc
        self._keyspace = valid_keyspace(keyspace)
        self._replication = dict(replication or {"class": "NetworkTopologyStrategy", local_dc: 3})
        self._consistency = consistency
        self._serial_consistency = serial_consistency
        self._request_timeout = request_timeout
        self._ttl = idempotency_ttl
        self._migrate_on_open = migrate_on_open
        self._cluster_options = dict(cluster_options or {})
        self._cluster: Any = None
        self._session: Any = None
        self._ps: dict[str, Any] = {}
        self._committers: dict[str, _Committer] = {}
        # Per conversation: the head this process last committed or read, and the highest seq it
        # knows to be materialized. Both are hints; the LWT condition is what is trusted.
        self._heads: dict[str, _Head] = {}
        self._materialized: dict[str, int] = {}
        # Per conversation: (seq, senders known to be members as of that seq). Membership only
        # changes by taking a seq, so while the head is still at that seq (which the LWT's
        # `IF last_seq = seq` checks) they are still members. Moved forward by this process's
        # own rounds that change no membership; any other head means it is stale.
        self._members_at: dict[str, tuple[int, set[str]]] = {}
        # Per kind: the conversation after which the next purge_expired call resumes its scan.
        self._purge_after: dict[Kind, str] = {}

    # Lifecycle

    async def open(self) -> None:
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=self._local_dc)
            ),
            retry_policy=_idempotent_only_retry_policy(),
            consistency_level=getattr(ConsistencyLevel, self._consistency),
            serial_consistency_level=getattr(ConsistencyLevel, self._serial_consistency),
            request_timeout=self._request_timeout,
        )
        options: dict[str, Any] = {"protocol_version": 4, **self._cluster_options}
        self._cluster = Cluster(
            contact_points=self._contact_points,
            port=self._port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **options,
        )
        self._session = self._cluster.connect()
        if self._migrate_on_open:
            migrate(self._session, self._keyspace, self._replication)
        self._prepare()

    def _prepare(self) -> None:
        s = self._session
        statements = {
            "head": f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"
            " WHERE conversation_id = ? LIMIT 1",
            "create": "INSERT INTO conversations (conversation_id, kind, title, created_by,"
            " created_at, last_seq, member_count, archived, updated_at, direct_key,"
            " initial_members) VALUES (?, ?, ?, ?, ?, 0, ?, false, ?, ?, ?) IF NOT EXISTS",
            "drop_conversation": "DELETE kind, title, created_by, created_at, last_seq,"
            " member_count, archived, updated_at, direct_key, initial_members, pending"
            " FROM conversations WHERE conversation_id = ? IF EXISTS",
            "set_title": "UPDATE conversations SET title = ? WHERE conversation_id = ? IF EXISTS",
            "set_archived": "UPDATE conversations SET archived = ?"
            " WHERE conversation_id = ? IF EXISTS",
            "advance": "UPDATE conversations SET last_seq = ?, member_count = ?, updated_at = ?,"
            " pending = ? WHERE conversation_id = ? IF last_seq = ?",
            "claim_key": "INSERT INTO conversations (conversation_id, sender_id, client_msg_id,"
            " msg_seq) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
            "get_key": "SELECT msg_seq FROM conversations WHERE conversation_id = ?"
            " AND sender_id = ? AND client_msg_id = ?",
            "get_direct": "SELECT conversation_id FROM direct_conversations WHERE direct_key = ?",
            "claim_direct": "INSERT INTO direct_conversations (direct_key, conversation_id)"
            " VALUES (?, ?) IF NOT EXISTS",
            "member": "SELECT conversation_id, user_id, role, joined_at, last_read_seq,"
            " last_delivered_seq FROM members WHERE conversation_id = ? AND user_id = ?",
            "members_page": "SELECT conversation_id, user_id, role, joined_at, last_read_seq,"
            " last_delivered_seq FROM members WHERE conversation_id = ? AND user_id > ?"
            " LIMIT ?",
            "member_roles": "SELECT user_id, role FROM members WHERE conversation_id = ?",
            "insert_member": "INSERT INTO members (conversation_id, user_id, role, joined_at,"
            " last_read_seq, last_delivered_seq) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            "insert_initial_member": "INSERT INTO members (conversation_id, user_id, role,"
            " joined_at) VALUES (?, ?, ?, ?) USING TIMESTAMP 0",
            "delete_member": "DELETE FROM members USING TIMESTAMP ?"
            " WHERE conversation_id = ? AND user_id = ?",
            "set_role": "UPDATE members USING TIMESTAMP ? SET role = ?"
            " WHERE conversation_id = ? AND user_id = ?",
            "mark_read": "UPDATE members USING TIMESTAMP ? SET last_read_seq = ?,"
            " last_delivered_seq = ? WHERE conversation_id = ? AND user_id = ?",
            "mark_delivered": "UPDATE members USING TIMESTAMP ? SET last_delivered_seq = ?"
            " WHERE conversation_id = ? AND user_id = ?",
            "pref": "SELECT muted FROM member_prefs WHERE conversation_id = ? AND user_id = ?",
            "prefs_range": "SELECT user_id, muted FROM member_prefs WHERE conversation_id = ?"
            " AND user_id >= ? AND user_id <= ?",
            "set_muted": "UPDATE member_prefs SET muted = ? WHERE conversation_id = ?"
            " AND user_id = ?",
            "delete_prefs": "DELETE FROM member_prefs WHERE conversation_id = ? AND user_id = ?",
            "add_user_conversation": "INSERT INTO user_conversations (user_id, conversation_id)"
            " VALUES (?, ?) USING TIMESTAMP ?",
            "add_initial_user_conversation": "INSERT INTO user_conversations (user_id,"
            " conversation_id) VALUES (?, ?) USING TIMESTAMP 0",
            "delete_user_conversation": "DELETE FROM user_conversations USING TIMESTAMP ?"
            " WHERE user_id = ? AND conversation_id = ?",
            "user_conversations": "SELECT conversation_id FROM user_conversations"
            " WHERE user_id = ?",
            "insert_message": f"INSERT INTO messages ({_MESSAGE_COLUMNS}, bucket) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, null, false, ?, ?) USING TIMESTAMP ?",
            "edit_message": "UPDATE messages USING TIMESTAMP ? SET body = ?, version = ?,"
            " edited_at = ? WHERE conversation_id = ? AND bucket = ? AND seq = ?",
            "tombstone_message": "UPDATE messages USING TIMESTAMP ? SET body = '',"
            " attachments = '[]', deleted = true"
            " WHERE conversation_id = ? AND bucket = ? AND seq = ?",
            "message": f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE conversation_id = ? AND bucket = ? AND seq = ?",
            "messages_in": f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE conversation_id = ? AND bucket = ? AND seq IN ?",
            "history_desc": f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
            " AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            "history_asc": f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
            " AND bucket = ? AND seq >= ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
            "unread_scan": "SELECT seq, sender_id, deleted FROM messages"
            " WHERE conversation_id = ? AND bucket = ? AND seq > ?",
            "insert_event": "INSERT INTO events (conversation_id, bucket, seq, kind, actor_id,"
            " occurred_at, message_seq, member_user_id, member_role)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            "event_exists": "SELECT seq FROM events WHERE conversation_id = ? AND bucket = ?"
            " AND seq = ?",
            "events_range": "SELECT seq, kind, actor_id, occurred_at, message_seq,"
            " member_user_id, member_role FROM events WHERE conversation_id = ?"
            " AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?",
            "set_block": "INSERT INTO blocks (user_id, blocked_user_id, created_at)"
            " VALUES (?, ?, ?)",
            "unset_block": "DELETE FROM blocks WHERE user_id = ? AND blocked_user_id = ?",
            "is_blocked": "SELECT blocked_user_id FROM blocks WHERE user_id = ?"
            " AND blocked_user_id = ?",
            "list_blocked": "SELECT blocked_user_id FROM blocks WHERE user_id = ?",
            "outbox_add": "INSERT INTO outbox_index (shard, conversation_id) VALUES (?, ?)"
            " USING TIMESTAMP ?",
            "outbox_drop": "DELETE FROM outbox_index USING TIMESTAMP ?"
            " WHERE shard = ? AND conversation_id = ?",
            "outbox_scan": "SELECT conversation_id FROM outbox_index WHERE shard = ? LIMIT ?",
            "relayed": "SELECT relayed_seq FROM outbox_relayed WHERE conversation_id = ?",
            "set_relayed": "UPDATE outbox_relayed USING TIMESTAMP ? SET relayed_seq = ?"
            " WHERE conversation_id = ?",
            # Retention (see purge_expired)
            "scan_heads_first": "SELECT DISTINCT conversation_id, kind, created_at, first_seq,"
            " last_seq FROM conversations LIMIT ?",
            "scan_heads_after": "SELECT DISTINCT conversation_id, kind, created_at, first_seq,"
            " last_seq FROM conversations WHERE token(conversation_id) > token(?) LIMIT ?",
            "purge_messages_bucket": "DELETE FROM messages USING TIMESTAMP ?"
            " WHERE conversation_id = ? AND bucket = ?",
            "purge_events_bucket": "DELETE FROM events USING TIMESTAMP ?"
            " WHERE conversation_id = ? AND bucket = ?",
            "purge_messages_below": "DELETE FROM messages USING TIMESTAMP ?"
            " WHERE conversation_id = ? AND bucket = ? AND seq < ?",
            "purge_events_below": "DELETE FROM events USING TIMESTAMP ?"
            " WHERE conversation_id = ? AND bucket = ? AND seq < ?",
            "set_first_seq": "UPDATE conversations USING TIMESTAMP ? SET first_seq = ?"
            " WHERE conversation_id = ?",
            "events_scan": "SELECT seq, kind, occurred_at FROM events WHERE conversation_id = ?"
            " AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?",
        }
        # Fully qualified names: no `USE`, so statements are unambiguous to the server.
        qualify = re.compile(r"\b(FROM|INTO|UPDATE)\s+(\w+)")
        self._ps = {
            name: s.prepare(qualify.sub(rf"\1 {self._keyspace}.\2", cql))
            for name, cql in statements.items()
        }
        # Everything but the lightweight transactions may run twice with the same outcome
        # (reads, and writes of fixed values or with explicit timestamps); only those are retried.
        for name, prepared in self._ps.items():
            prepared.is_idempotent = " IF " not in statements[name]

    async def close(self) -> None:
        for committer in list(self._committers.values()):
            if committer.task is not None:
                with contextlib.suppress(Exception):
                    await committer.task
        if self._cluster is not None:
            cluster, self._cluster, self._session = self._cluster, None, None
            await asyncio.to_thread(cluster.shutdown)

    # The driver bridge

    async def _run(
        self, name: str, params: Sequence[Any] = (), *, serial: bool = False
    ) -> list[Any]:
        """Executes a prepared statement; all pages of its result."""
        if self._session is None:
            raise RuntimeError("store is not open")
        statement = self._ps[name].bind(params)
        if serial:
            from cassandra import ConsistencyLevel

            statement.consistency_level = getattr(ConsistencyLevel, self._serial_consistency)
        return await self._execute(statement)

    async def _execute(self, statement: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[Any]] = loop.create_future()
        rows: list[Any] = []
        response = self._session.execute_async(statement)

        def settle(value: list[Any] | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value or [])

        def on_rows(page: Any) -> None:
            rows.extend(page or ())
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(settle, rows, None)

        def on_error(error: BaseException) -> None:
            loop.call_soon_threadsafe(settle, None, error)

        response.add_callbacks(on_rows, on_error)
        return await result

    # Conversations

    async def _read_head(self, conversation_id: str, *, serial: bool = False) -> _Head | None:
        rows = await self._run("head", (conversation_id,), serial=serial)
        head = _head(rows[0] if rows else None)
        if head is not None:
            self._remember(conversation_id, head)
        return head

    def _remember(self, conversation_id: str, head: _Head) -> None:
        if len(self._heads) >= MAX_CACHED_CONVERSATIONS:
            # Hints only: dropping them costs a read, never correctness.
            self._heads.clear()
            self._materialized.clear()
            self._members_at.clear()
        self._heads[conversation_id] = head

    async def create_conversation(self, new: NewConversation) -> tuple[ConversationRecord, bool]:
        if new.direct_key:
            existing = await self._run("get_direct", (new.direct_key,))
            if existing:
                return await self._existing_direct(existing[0].conversation_id), False
        initial = json.dumps([[u, int(r)] for u, r in new.members])
        created = await self._run(
            "create",
            (
                new.conversation_id,
                int(new.kind),
                new.title,
                new.created_by,
                new.created_at,
                len(new.members),
                new.created_at,
                new.direct_key or None,
                initial,
            ),
        )
        if not created[0][0]:
            raise ConflictError(f"conversation {new.conversation_id} exists")
        if new.direct_key:
            claim = await self._run("claim_direct", (new.direct_key, new.conversation_id))
            if not claim[0][0]:
                # Lost the race: drop the attempt (no member rows were written for it).
                await self._run("drop_conversation", (new.conversation_id,))
                return await self._existing_direct(claim[0].conversation_id), False
        await self._write_initial_members(new.conversation_id, new.members, new.created_at)
        record = ConversationRecord(
            conversation_id=new.conversation_id,
            kind=new.kind,
            title=new.title,
            created_by=new.created_by,
            created_at=new.created_at,
            last_seq=0,
            member_count=len(new.members),
            archived=False,
            updated_at=new.created_at,
        )
        return record, True

    async def _write_initial_members(
        self, conversation_id: str, members: Sequence[tuple[str, Role]], at: float
    ) -> None:
        # Timestamp 0: idempotent, and never shadows a later membership event (timestamp = seq).
        await asyncio.gather(
            *(
                self._run("insert_initial_member", (conversation_id, u, int(r), at))
                for u, r in members
            ),
            *(self._run("add_initial_user_conversation", (u, conversation_id)) for u, _ in members),
        )

    async def _existing_direct(self, conversation_id: str) -> ConversationRecord:
        rows = await self._run("head", (conversation_id,))
        if not rows or rows[0].kind is None:
            raise StoreError(f"direct conversation {conversation_id} is missing")
        row = rows[0]
        # Roll forward a creator that died between claiming the key and writing its members.
        members = [(u, Role(r)) for u, r in json.loads(row.initial_members or "[]")]
        await self._write_initial_members(conversation_id, members, row.created_at or 0.0)
        head = _head(row)
        assert head is not None
        return head.conversation

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        head = await self._read_head(conversation_id)
        return head.conversation if head else None

    async def update_conversation(
        self, conversation_id: str, title: str | None, archived: bool | None, at: float
    ) -> ConversationRecord:
        for name, value in (("set_title", title), ("set_archived", archived)):
            if value is not None:
                applied = await self._run(name, (value, conversation_id))
                if not applied[0][0]:
                    raise NotFoundError(f"conversation {conversation_id} not found")
        head = await self._read_head(conversation_id)
        if head is None:
            raise NotFoundError(f"conversation {conversation_id} not found")
        return head.conversation

    # Members

    async def get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None:
        rows, prefs = await asyncio.gather(
            self._run("member", (conversation_id, user_id)),
            self._run("pref", (conversation_id, user_id)),
        )
        if not rows or rows[0].role is None:
            return None
        return self._member(rows[0], bool(prefs and prefs[0].muted))

    @staticmethod
    def _member(row: Any, muted: bool) -> MemberRecord:
        return MemberRecord(
            conversation_id=row.conversation_id,
            user_id=row.user_id,
            role=Role(row.role),
            joined_at=row.joined_at or 0.0,
            last_read_seq=row.last_read_seq or 0,
            last_delivered_seq=row.last_delivered_seq or 0,
            muted=muted,
        )

    async def _require_member(self, conversation_id: str, user_id: str) -> MemberRecord:
        member = await self.get_member(conversation_id, user_id)
        if member is None:
            raise NotFoundError(f"{user_id} is not a member of {conversation_id}")
        return member

    async def list_members(
        self, conversation_id: str, after_user_id: str, limit: int
    ) -> list[MemberRecord]:
        out: list[MemberRecord] = []
        after = after_user_id
        while len(out) < limit:
            want = limit - len(out)
            rows = await self._run("members_page", (conversation_id, after, want))
            if not rows:
                break
            prefs = await self._run(
                "prefs_range", (conversation_id, rows[0].user_id, rows[-1].user_id)
            )
            muted = {p.user_id: bool(p.muted) for p in prefs}
            # Rows without a role are marker cells outliving a membership: not members.
            out.extend(
                self._member(r, muted.get(r.user_id, False)) for r in rows if r.role is not None
            )
            if len(rows) < want:
                break
            after = rows[-1].user_id
        return out

    async def member_ids(self, conversation_id: str) -> list[str]:
        rows = await self._run("member_roles", (conversation_id,))
        return [r.user_id for r in rows if r.role is not None]

    async def user_conversations(self, user_id: str) -> list[MemberRecord]:
        rows = await self._run("user_conversations", (user_id,))
        members = await asyncio.gather(*(self.get_member(r.conversation_id, user_id) for r in rows))
        return [m for m in members if m is not None]

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        result: list[EventRecord] = await self._submit(
            conversation_id,
            _Op("members", self._future(), actor_id=actor_id, at=at, changes=list(changes)),
        )
        return result

    async def set_muted(self, conversation_id: str, user_id: str, muted: bool) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        await self._run("set_muted", (muted, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    # Messages and the log

    @staticmethod
    def _future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def append_message(self, new: NewMessage) -> AppendResult:
        size = len(new.body.encode()) + sum(len(a) for a in new.attachments) + 256
        result: AppendResult = await self._submit(
            new.conversation_id, _Op("append", self._future(), new=new, size=size)
        )
        return result

    async def edit_message(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        result: EventRecord = await self._submit(
            conversation_id,
            _Op("edit", self._future(), actor_id=actor_id, at=at, seq=seq, body=body),
        )
        return result

    async def delete_message(
        self, conversation_id: str, seq: int, actor_id: str, at: float
    ) -> EventRecord:
        result: EventRecord = await self._submit(
            conversation_id, _Op("delete", self._future(), actor_id=actor_id, at=at, seq=seq)
        )
        return result

    async def get_message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        # The head and the row in parallel; the row is only trusted when this process knew,
        # before both reads, that everything up to the head's last_seq was materialized.
        # Otherwise the last round is completed first (after a writer crash) and the row read
        # again.
        known = self._materialized.get(conversation_id, 0)
        head, row = await asyncio.gather(
            self._read_head(conversation_id), self._message_row(conversation_id, seq)
        )
        if head is None or not head.conversation.first_seq <= seq <= head.conversation.last_seq:
            return None
        if head.conversation.last_seq > known:
            await self._roll_forward(conversation_id, head)
            row = await self._message_row(conversation_id, seq)
        return row

    async def _message_row(self, conversation_id: str, seq: int) -> MessageRecord | None:
        """The message row as it is (for callers that have rolled the head forward)."""
        if seq <= 0:
            return None
        rows = await self._run("message", (conversation_id, bucket_of(seq), seq))
        return _message(rows[0]) if rows else None

    async def _settled_head(self, conversation_id: str) -> _Head | None:
        """The head, with its last round materialized: rows up to last_seq can be read.

        One head read (which carries `pending`); the `event_exists` check only when this
        process does not know the round to be materialized, and writes only after a crash.
        """
        head = await self._read_head(conversation_id)
        if head is not None:
            await self._roll_forward(conversation_id, head)
        return head

    async def history(
        self, conversation_id: str, before_seq: int, after_seq: int, limit: int
    ) -> list[MessageRecord]:
        head = await self._settled_head(conversation_id)
        if head is None or limit <= 0:
            return []
        last = head.conversation.last_seq
        hi = min(before_seq - 1, last) if before_seq > 0 else last
        lo = max(after_seq + 1, head.conversation.first_seq, 1)
        if hi < lo:
            return []
        ascending = after_seq > 0 and before_seq == 0
        buckets = range(bucket_of(lo), bucket_of(hi) + 1)
        out: list[MessageRecord] = []
        for bucket in buckets if ascending else reversed(buckets):
            name = "history_asc" if ascending else "history_desc"
            rows = await self._run(name, (conversation_id, bucket, lo, hi, limit - len(out)))
            out.extend(_message(r) for r in rows)
            if len(out) >= limit:
                break
        return out

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[EventRecord]:
        head = await self._read_head(conversation_id)
        if head is None or limit <= 0:
            return []
        last = head.conversation.last_seq
        first = head.conversation.first_seq
        # A cursor below the retention horizon replays from the horizon.
        lo = max(after_seq + 1, first)
        if last < lo:
            return []
        rows = await self._events_range(conversation_id, lo, last, limit)
        if len(rows) < limit and (not rows or rows[-1].seq < last):
            # The last round's writer may have died after its LWT: complete it, read again.
            await self._roll_forward(conversation_id, head)
            rows = await self._events_range(conversation_id, lo, last, limit)
        by_bucket: dict[int, list[int]] = {}
        for row in rows:
            # An edit or delete of a purged message (below the horizon) has no message.
            if row.message_seq and row.message_seq >= first:
                by_bucket.setdefault(bucket_of(row.message_seq), []).append(row.message_seq)
        fetched = await asyncio.gather(
            *(
                self._run("messages_in", (conversation_id, b, sorted(set(seqs))))
                for b, seqs in by_bucket.items()
            )
        )
        messages = {m.seq: _message(m) for page in fetched for m in page}
        return [
            EventRecord(
                conversation_id=conversation_id,
                seq=row.seq,
                kind=EventKind(row.kind),
                actor_id=row.actor_id or "",
                occurred_at=row.occurred_at or 0.0,
                message=messages.get(row.message_seq) if row.message_seq >= first else None,
                member_user_id=row.member_user_id or "",
                member_role=Role(row.member_role) if row.member_role else None,
            )
            for row in rows
        ]

    # The outbox: pending = (relayed_seq, last_seq], both read from their own rows

    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        out: list[OutboxEntry] = []
        for shard in range(OUTBOX_SHARDS):
            if len(out) >= limit:
                break
            rows = await self._run("outbox_scan", (shard, max(limit * 2, 64)))
            entries = await asyncio.gather(
                *(self._outbox_entry(r.conversation_id, tidy=True) for r in rows)
            )
            out.extend(e for e in entries if e is not None)
        return out[:limit]

    async def outbox_entry(self, conversation_id: str) -> OutboxEntry | None:
        return await self._outbox_entry(conversation_id, tidy=False)

    async def _outbox_entry(self, conversation_id: str, *, tidy: bool) -> OutboxEntry | None:
        head, relayed_rows = await asyncio.gather(
            self._read_head(conversation_id), self._run("relayed", (conversation_id,))
        )
        relayed = relayed_rows[0].relayed_seq or 0 if relayed_rows else 0
        last = head.conversation.last_seq if head else 0
        if last > relayed:
            return OutboxEntry(conversation_id, relayed + 1, last)
        if tidy:
            # Timestamp = relayed seq: an index write for a newer round (timestamp > it) stays.
            await self._run(
                "outbox_drop", (relayed, outbox_shard(conversation_id), conversation_id)
            )
        return None

    async def clear_outbox(self, relayed: Sequence[tuple[str, int]]) -> None:
        async def clear(conversation_id: str, up_to_seq: int) -> None:
            up_to_seq = max(up_to_seq, 0)
            # One request: raise the relayed seq and drop the index row, both at timestamp
            # up_to_seq. No head read is needed: a round that took a seq above up_to_seq wrote
            # its index row with that (higher) timestamp, which this delete cannot shadow. If
            # only one half lands, nothing is lost: the events were published before this call.
            await self._run_batch(
                [
                    ("set_relayed", (up_to_seq, up_to_seq, conversation_id)),
                    ("outbox_drop", (up_to_seq, outbox_shard(conversation_id), conversation_id)),
                ]
            )

        await asyncio.gather(*(clear(cid, seq) for cid, seq in relayed))

    async def _events_range(self, conversation_id: str, lo: int, hi: int, limit: int) -> list[Any]:
        rows: list[Any] = []
        for bucket in range(bucket_of(lo), bucket_of(hi) + 1):
            rows.extend(
                await self._run(
                    "events_range", (conversation_id, bucket, lo, hi, limit - len(rows))
                )
            )
            if len(rows) >= limit:
                break
        return rows

    # Retention

    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        """Scans the conversation heads (token order, one `SELECT DISTINCT` page of static
        rows at a time, resuming where the previous call stopped) and purges the expired start
        of the log of each conversation of `kind` created before `before`. A call returns fewer
        than `limit` only when its scan reached the end of the table (the next call starts
        over)."""
        if limit <= 0:
            return 0
        removed = 0
        after = self._purge_after.pop(kind, None)
        while True:
            if after is None:
                rows = await self._run("scan_heads_first", (PURGE_SCAN_PAGE,))
            else:
                rows = await self._run("scan_heads_after", (after, PURGE_SCAN_PAGE))
            for row in rows:
                if (
                    row.kind == int(kind)
                    and (row.created_at or 0.0) < before
                    and (row.first_seq or 1) <= (row.last_seq or 0)
                ):
                    removed += await self._purge_conversation(
                        row.conversation_id, before, limit - removed
                    )
                    if removed >= limit:
                        # Resume at this conversation: it may have more expired messages.
                        if after is not None:
                            self._purge_after[kind] = after
                        return removed
                after = row.conversation_id
            if len(rows) < PURGE_SCAN_PAGE:
                return removed

    async def _purge_conversation(self, conversation_id: str, before: float, budget: int) -> int:
        """Purges one conversation's expired run of events (at most `budget` messages).

        Order: message rows, then event rows, then the horizon. A crash in between leaves rows
        gone below a horizon not yet moved: readers then see the log start at the first row
        that is left (the same as after the horizon moved), and the next purge recomputes the
        horizon from the rows that are left and writes it."""
        head = await self._settled_head(conversation_id)
        if head is None:
            return 0
        first = head.conversation.first_seq
        last = head.conversation.last_seq
        horizon = last + 1
        removed = 0
        lo = first
        found = False
        while not found and lo <= last:
            rows: list[Any] = []
            for bucket in range(bucket_of(lo), bucket_of(last) + 1):
                rows.extend(
                    await self._run(
                        "events_scan",
                        (conversation_id, bucket, lo, last, PURGE_EVENTS_PAGE - len(rows)),
                    )
                )
                if len(rows) >= PURGE_EVENTS_PAGE:
                    break
            for row in rows:
                if (row.occurred_at or 0.0) >= before or (
                    row.kind == int(EventKind.MESSAGE_CREATED) and removed >= budget
                ):
                    horizon = row.seq
                    found = True
                    break
                if row.kind == int(EventKind.MESSAGE_CREATED):
                    removed += 1
            if not rows or len(rows) < PURGE_EVENTS_PAGE:
                break
            lo = rows[-1].seq + 1
        if horizon <= first:
            return 0
        whole = range(bucket_of(first), bucket_of(horizon))
        # Rows in `messages` and `events` are only ever written with seq timestamps (small
        # integers), so a wall-clock timestamp (microseconds) shadows all of them, including the
        # late cells of a stalled writer (an edit that read its target before this purge): no
        # row below the horizon can come back. Readers never look below it anyway.
        ts = int(time.time() * 1_000_000)
        for table in ("messages", "events"):
            statements: list[tuple[str, Sequence[Any]]] = [
                (f"purge_{table}_bucket", (ts, conversation_id, b)) for b in whole
            ]
            if horizon % BUCKET_SIZE:
                statements.append(
                    (f"purge_{table}_below", (ts, conversation_id, bucket_of(horizon), horizon))
                )
            # One partition each: independent, idempotent, in parallel.
            await asyncio.gather(*(self._run(name, params) for name, params in statements))
        # Timestamp = value: a lower horizon (a slower, concurrent purge) never overwrites a
        # higher one, without an LWT.
        await self._run("set_first_seq", (horizon, horizon, conversation_id))
        cached = self._heads.get(conversation_id)
        if cached is not None and cached.conversation.first_seq < horizon:
            cached.conversation = dataclasses.replace(cached.conversation, first_seq=horizon)
        return removed

    # Receipts and unread

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        seq = max(seq, 0)
        # Timestamp = value: a lower mark never overwrites a higher one.
        await self._run("mark_read", (seq, seq, seq, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    async def mark_delivered(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        seq = max(seq, 0)
        await self._run("mark_delivered", (seq, seq, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    async def count_unread(self, conversation_id: str, user_id: str, after_seq: int) -> int:
        head = await self._settled_head(conversation_id)
        if head is None or head.conversation.last_seq <= after_seq:
            return 0
        start = max(after_seq, head.conversation.first_seq - 1, 0)
        pages = await asyncio.gather(
            *(
                self._run("unread_scan", (conversation_id, b, start))
                for b in range(bucket_of(start + 1), bucket_of(head.conversation.last_seq) + 1)
            )
        )
        return sum(1 for page in pages for r in page if r.sender_id != user_id and not r.deleted)

    # Blocks

    async def set_block(self, user_id: str, blocked_user_id: str, blocked: bool) -> None:
        if blocked:
            await self._run("set_block", (user_id, blocked_user_id, time.time()))
        else:
            await self._run("unset_block", (user_id, blocked_user_id))

    async def is_blocked(self, user_id: str, blocked_user_id: str) -> bool:
        return bool(await self._run("is_blocked", (user_id, blocked_user_id)))

    async def list_blocked(self, user_id: str) -> list[str]:
        return [r.blocked_user_id for r in await self._run("list_blocked", (user_id,))]

    # The committer: one task per conversation per process, one LWT per round

    async def _submit(self, conversation_id: str, op: _Op) -> Any:
        committer = self._committers.setdefault(conversation_id, _Committer())
        committer.queue.append(op)
        if committer.task is None or committer.task.done():
            committer.task = asyncio.get_running_loop().create_task(self._drain(conversation_id))
        return await op.future

    async def _drain(self, conversation_id: str) -> None:
        committer = self._committers[conversation_id]
        try:
            while committer.queue:
                batch = self._take_round(committer.queue)
                try:
                    await self._round(conversation_id, batch)
                except Exception as exc:
                    for op in batch:
                        if not op.future.done():
                            op.future.set_exception(exc)
        finally:
            if not committer.queue and self._committers.get(conversation_id) is committer:
                del self._committers[conversation_id]

    @staticmethod
    def _take_round(queue: list[_Op]) -> list[_Op]:
        if queue[0].kind != "append":
            return [queue.pop(0)]
        batch: list[_Op] = []
        size = 0
        while (
            queue
            and queue[0].kind == "append"
            and len(batch) < MAX_APPENDS_PER_ROUND
            and (not batch or size + queue[0].size <= MAX_ROUND_BYTES)
        ):
            op = queue.pop(0)
            size += op.size
            batch.append(op)
        return batch

    async def _round(self, conversation_id: str, ops: list[_Op]) -> None:
        head = self._heads.get(conversation_id) or await self._read_head(conversation_id)
        attempt = 0
        while True:
            if head is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            await self._roll_forward(conversation_id, head)
            ops = [op for op in ops if not op.future.done()]
            if not ops:
                return
            if ops[0].kind == "append":
                outcome = await self._try_appends(conversation_id, head, ops)
            else:
                outcome = await self._try_single(conversation_id, head, ops[0])
            if outcome:
                return
            attempt += 1
            if attempt >= MAX_ROUND_ATTEMPTS:
                raise StoreError(f"conversation {conversation_id}: too much write contention")
            if attempt > 1:
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
            head = await self._read_head(conversation_id, serial=True)

    async def _roll_forward(self, conversation_id: str, head: _Head) -> None:
        """Makes sure the events of the head's round are materialized."""
        last = head.conversation.last_seq
        if last == 0 or self._materialized.get(conversation_id, 0) >= last:
            return
        exists = await self._run("event_exists", (conversation_id, bucket_of(last), last))
        if not exists:
            log.info("rolling forward %s up to seq %d", conversation_id, last)
            await self._materialize(conversation_id, head.pending)
        self._materialized[conversation_id] = max(self._materialized.get(conversation_id, 0), last)

    async def _outbox_add(self, conversation_id: str, up_to_seq: int) -> None:
        # The outbox learns of a round before it can commit: timestamp = the seq it would take,
        # so clear_outbox (deleting at the relayed seq) never drops it. See docs/storage.md.
        await self._run("outbox_add", (outbox_shard(conversation_id), conversation_id, up_to_seq))

    async def _advance(
        self,
        head: _Head,
        events: list[dict[str, Any]],
        member_delta: int,
        keys: Sequence[Any],
        *,
        indexed_at: int = -1,
    ) -> tuple[bool, list[Any]]:
        """The LWT: last_seq n -> n + len(events). Returns (applied, rows on failure).

        `indexed_at`: the timestamp of an outbox index write the caller already made for this
        round; at least n + len(events) makes a second one unnecessary."""
        from cassandra.query import BatchStatement

        conversation = head.conversation
        cid = conversation.conversation_id
        last = conversation.last_seq
        if indexed_at < last + len(events):
            await self._outbox_add(cid, last + len(events))
        round_id = uuid.uuid4().hex
        pending = json.dumps({"round": round_id, "events": events}, separators=(",", ":"))
        advance = self._ps["advance"].bind(
            (
                last + len(events),
                conversation.member_count + member_delta,
                max(e["at"] for e in events),
                pending,
                cid,
                last,
            )
        )
        if keys:
            statement: Any = BatchStatement()
            statement.add(advance)
            for sender_id, client_msg_id, seq in keys:
                statement.add(
                    self._ps["claim_key"].bind((cid, sender_id, client_msg_id, seq, self._ttl))
                )
        else:
            statement = advance
        try:
            rows = await self._execute(statement)
        except Exception as exc:
            from cassandra import OperationTimedOut, WriteTimeout

            if not isinstance(exc, (WriteTimeout, OperationTimedOut)):
                raise
            # Outcome unknown: a serial read completes or discards the proposal; then look.
            log.warning("LWT on %s timed out; checking its outcome", cid)
            current = await self._run("head", (cid,), serial=True)
            seen = json.loads(current[0].pending or "{}") if current else {}
            if not (isinstance(seen, dict) and seen.get("round") == round_id):
                self._heads.pop(cid, None)
                return False, []
            rows = [(True,)]
        if rows and rows[0][0]:
            new_head = _Head(
                ConversationRecord(
                    conversation_id=cid,
                    kind=conversation.kind,
                    title=conversation.title,
                    created_by=conversation.created_by,
                    created_at=conversation.created_at,
                    last_seq=last + len(events),
                    member_count=conversation.member_count + member_delta,
                    archived=conversation.archived,
                    updated_at=max(e["at"] for e in events),
                    first_seq=conversation.first_seq,
                ),
                events,
            )
            self._remember(cid, new_head)
            members = self._members_at.pop(cid, None)
            if (
                members is not None
                and members[0] == last
                and member_delta == 0
                and all(EventKind(e["kind"]) in _KEEPS_MEMBERSHIP for e in events)
            ):
                self._members_at[cid] = (last + len(events), members[1])
            await self._materialize(cid, events)
            self._materialized[cid] = max(self._materialized.get(cid, 0), last + len(events))
            return True, []
        self._heads.pop(cid, None)
        return False, rows

    async def _refuse_non_members(
        self, conversation_id: str, head: _Head, ops: list[_Op], index_at: int
    ) -> tuple[list[_Op], int]:
        """Answers the appends of senders who are not members (as of the rolled-forward head);
        returns the others, and the timestamp of the outbox index write made meanwhile (-1:
        none). A retried key is still answered as a duplicate, as by the SQLite store.
        Serializable: membership only changes by taking a seq, which the LWT guards; so senders
        known to be members as of the head's seq are not read again."""
        last = head.conversation.last_seq
        cached = self._members_at.get(conversation_id)
        known = cached[1] if cached is not None and cached[0] == last else set()
        senders = sorted({op.new.sender_id for op in ops if op.new is not None} - known)
        if not senders:
            return ops, -1
        # The index write (needed before the LWT anyway) goes in parallel with the reads, at
        # the highest seq the round can take (a lower round leaves a stale index row at worst,
        # which the sweep skips).
        *found, _ = await asyncio.gather(
            *(self._run("member", (conversation_id, u)) for u in senders),
            self._outbox_add(conversation_id, index_at),
        )
        members = {u for u, rows in zip(senders, found, strict=True) if rows and rows[0].role}
        if len(known) + len(members) <= MAX_CACHED_MEMBERS:
            self._members_at[conversation_id] = (last, known | members)
        members |= known
        kept: list[_Op] = []
        for op in ops:
            assert op.new is not None
            if op.new.sender_id in members:
                kept.append(op)
                continue
            key = await self._run(
                "get_key", (conversation_id, op.new.sender_id, op.new.client_msg_id)
            )
            stored = (
                await self._message_row(conversation_id, key[0].msg_seq)
                if key and key[0].msg_seq
                else None
            )
            if stored is not None:
                op.future.set_result(AppendResult(stored, duplicate=True))
            else:
                op.future.set_exception(
                    NotMemberError(f"not a member of conversation {conversation_id}")
                )
        return kept, index_at

    async def _try_appends(self, conversation_id: str, head: _Head, ops: list[_Op]) -> bool:
        distinct = len({(op.new.sender_id, op.new.client_msg_id) for op in ops if op.new})
        ops, indexed_at = await self._refuse_non_members(
            conversation_id, head, ops, head.conversation.last_seq + distinct
        )
        if not ops:
            return True
        last = head.conversation.last_seq
        events: list[dict[str, Any]] = []
        owners: dict[tuple[str, str], list[_Op]] = {}
        for op in ops:
            assert op.new is not None
            key = (op.new.sender_id, op.new.client_msg_id)
            if key in owners:
                owners[key].append(op)  # a retry racing its original in this process
                continue
            owners[key] = [op]
            new = op.new
            events.append(
                {
                    "seq": last + len(events) + 1,
                    "kind": int(EventKind.MESSAGE_CREATED),
                    "actor": new.sender_id,
                    "at": new.created_at,
                    "message": {
                        "seq": last + len(events) + 1,
                        "message_id": new.message_id,
                        "sender_id": new.sender_id,
                        "created_at": new.created_at,
                        "kind": new.kind,
                        "body": new.body,
                        "attachments": list(new.attachments),
                        "reply_to_seq": new.reply_to_seq,
                        "client_msg_id": new.client_msg_id,
                    },
                }
            )
        keys = [
            (e["message"]["sender_id"], e["message"]["client_msg_id"], e["seq"]) for e in events
        ]
        applied, rows = await self._advance(head, events, 0, keys, indexed_at=indexed_at)
        if applied:
            for event in events:
                message = _message_from_json(conversation_id, event["message"])
                first, *retries = owners[(message.sender_id, message.client_msg_id)]
                first.future.set_result(AppendResult(message, duplicate=False))
                for op in retries:
                    op.future.set_result(AppendResult(message, duplicate=True))
            return True
        # Keys already stored answer their ops as duplicates; the rest go again.
        taken = {
            (r.sender_id, r.client_msg_id): r.msg_seq
            for r in rows
            if getattr(r, "msg_seq", None) is not None and (r.sender_id, r.client_msg_id) in owners
        }
        if taken:
            # The head moved past them, or they were materialized before: roll forward first.
            now = await self._read_head(conversation_id, serial=True)
            if now is not None:
                await self._roll_forward(conversation_id, now)
            for key, seq in taken.items():
                stored = await self._message_row(conversation_id, seq)
                for op in owners[key]:
                    if stored is None:
                        op.future.set_exception(StoreError(f"message {seq} is missing"))
                    else:
                        op.future.set_result(AppendResult(stored, duplicate=True))
        return False

    async def _try_single(self, conversation_id: str, head: _Head, op: _Op) -> bool:
        last = head.conversation.last_seq
        if op.kind == "members":
            planned, delta, results = await self._plan_members(conversation_id, head, op)
            if not planned:
                op.future.set_result([])
                return True
            applied, _ = await self._advance(head, planned, delta, ())
            if applied:
                op.future.set_result(results)
            return applied
        # An edit or a delete of message op.seq, by a member.
        cached = self._members_at.get(conversation_id)
        if cached is None or cached[0] != last or op.actor_id not in cached[1]:
            actor = await self._run("member", (conversation_id, op.actor_id))
            if not actor or actor[0].role is None:
                raise NotMemberError(f"not a member of conversation {conversation_id}")
        current = (
            await self._message_row(conversation_id, op.seq)
            if op.seq >= head.conversation.first_seq
            else None
        )
        if current is None:
            raise NotFoundError(f"message {op.seq} not found")
        if current.deleted:
            raise ConflictError(f"message {op.seq} is deleted")
        seq = last + 1
        if op.kind == "edit":
            kind = EventKind.MESSAGE_EDITED
            updated = dataclasses.replace(
                current, body=op.body, version=current.version + 1, edited_at=op.at
            )
        else:
            kind = EventKind.MESSAGE_DELETED
            updated = dataclasses.replace(current, body="", attachments=(), deleted=True)
        event = {
            "seq": seq,
            "kind": int(kind),
            "actor": op.actor_id,
            "at": op.at,
            "target": op.seq,
            "body": op.body,
            "version": updated.version,
        }
        applied, _ = await self._advance(head, [event], 0, ())
        if applied:
            op.future.set_result(
                EventRecord(
                    conversation_id=conversation_id,
                    seq=seq,
                    kind=kind,
                    actor_id=op.actor_id,
                    occurred_at=op.at,
                    message=updated,
                )
            )
        return applied

    async def _plan_members(
        self, conversation_id: str, head: _Head, op: _Op
    ) -> tuple[list[dict[str, Any]], int, list[EventRecord]]:
        users = sorted({c.user_id for c in op.changes})
        found = await asyncio.gather(*(self._run("member", (conversation_id, u)) for u in users))
        roles: dict[str, int | None] = {
            u: (rows[0].role if rows else None) for u, rows in zip(users, found, strict=True)
        }
        last = head.conversation.last_seq
        events: list[dict[str, Any]] = []
        results: list[EventRecord] = []
        delta = 0
        for change in op.changes:
            present = roles[change.user_id]
            role: Role | None
            if change.kind == EventKind.MEMBER_ADDED:
                if present is not None:
                    continue
                role = change.role or Role.MEMBER
                roles[change.user_id] = int(role)
                delta += 1
            elif change.kind in (EventKind.MEMBER_REMOVED, EventKind.MEMBER_LEFT):
                if present is None:
                    continue
                role = None
                roles[change.user_id] = None
                delta -= 1
            elif change.kind == EventKind.MEMBER_ROLE_CHANGED:
                if present is None:
                    raise NotFoundError(f"{change.user_id} is not a member")
                role = change.role or Role.MEMBER
                if present == int(role):
                    continue
                roles[change.user_id] = int(role)
            else:
                raise ValueError(f"not a membership change: {change.kind!r}")
            seq = last + len(events) + 1
            count = head.conversation.member_count + delta
            events.append(
                {
                    "seq": seq,
                    "kind": int(change.kind),
                    "actor": op.actor_id,
                    "at": op.at,
                    "member": change.user_id,
                    "role": int(role) if role else 0,
                }
            )
            results.append(
                EventRecord(
                    conversation_id=conversation_id,
                    seq=seq,
                    kind=change.kind,
                    actor_id=op.actor_id,
                    occurred_at=op.at,
                    member_user_id=change.user_id,
                    member_role=role,
                    member_count=count,
                )
            )
        return events, delta, results

    async def _materialize(self, conversation_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Idempotent writes of a round's events: side effects first, event rows after, and the
        last event row last (its presence means the round is fully materialized)."""
        if not events:
            return
        cid = conversation_id
        # Statements grouped by partition: a small round goes as one UNLOGGED batch (one
        # request), a bigger one as one single-partition UNLOGGED batch per partition (one
        # mutation on the replicas, not subject to the multi-partition batch size limits), the
        # groups in parallel.
        groups: dict[tuple[str, Any], list[tuple[str, Sequence[Any]]]] = {}

        def add(partition: tuple[str, Any], name: str, params: Sequence[Any]) -> None:
            groups.setdefault(partition, []).append((name, params))

        for e in events:
            seq = int(e["seq"])
            kind = EventKind(e["kind"])
            if kind == EventKind.MESSAGE_CREATED:
                m = e["message"]
                add(
                    ("messages", bucket_of(seq)),
                    "insert_message",
                    (
                        cid,
                        seq,
                        m["message_id"],
                        m["sender_id"],
                        m["created_at"],
                        m["kind"],
                        m["body"],
                        json.dumps(m["attachments"]),
                        m["reply_to_seq"],
                        m["client_msg_id"],
                        bucket_of(seq),
                        seq,
                    ),
                )
                add(("members", cid), "mark_read", (seq, seq, seq, cid, m["sender_id"]))
            elif kind == EventKind.MESSAGE_EDITED:
                target = int(e["target"])
                add(
                    ("messages", bucket_of(target)),
                    "edit_message",
                    (seq, e["body"], e["version"], e["at"], cid, bucket_of(target), target),
                )
            elif kind == EventKind.MESSAGE_DELETED:
                target = int(e["target"])
                add(
                    ("messages", bucket_of(target)),
                    "tombstone_message",
                    (seq, cid, bucket_of(target), target),
                )
            elif kind == EventKind.MEMBER_ADDED:
                user_id = e["member"]
                add(
                    ("members", cid),
                    "insert_member",
                    (cid, user_id, e["role"], e["at"], seq, seq, seq),
                )
                add(("user_conversations", user_id), "add_user_conversation", (user_id, cid, seq))
            elif kind in (EventKind.MEMBER_REMOVED, EventKind.MEMBER_LEFT):
                user_id = e["member"]
                add(("members", cid), "delete_member", (seq, cid, user_id))
                add(
                    ("user_conversations", user_id),
                    "delete_user_conversation",
                    (seq, user_id, cid),
                )
                add(("member_prefs", cid), "delete_prefs", (cid, user_id))
            elif kind == EventKind.MEMBER_ROLE_CHANGED:
                add(("members", cid), "set_role", (seq, e["role"], cid, e["member"]))
        statements = [st for group in groups.values() for st in group]
        size = sum(
            200 + sum(len(p) for p in params if isinstance(p, str)) for _, params in statements
        )
        if len(groups) <= MAX_COMBINED_BATCH_PARTITIONS and size <= MAX_COMBINED_BATCH_BYTES:
            # A small round (a lone send: its message row and the sender's markers): one request.
            await self._run_batch(statements)
        else:
            await asyncio.gather(*(self._run_batch(group) for group in groups.values()))

        def event_row(e: Mapping[str, Any]) -> tuple[Any, ...]:
            seq = int(e["seq"])
            kind = EventKind(e["kind"])
            message_seq = seq if kind == EventKind.MESSAGE_CREATED else int(e.get("target", 0))
            return (
                cid,
                bucket_of(seq),
                seq,
                int(kind),
                e["actor"],
                e["at"],
                message_seq,
                e.get("member", ""),
                int(e.get("role", 0)),
                seq,
            )

        # Event rows by bucket, in seq order: the bucket holding the last seq goes last, and a
        # single-partition batch is applied whole, so that row's presence means all are there.
        by_bucket: dict[int, list[tuple[str, Sequence[Any]]]] = {}
        for e in events:
            by_bucket.setdefault(bucket_of(int(e["seq"])), []).append(
                ("insert_event", event_row(e))
            )
        for bucket in sorted(by_bucket):
            await self._run_batch(by_bucket[bucket])

    async def _run_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Runs statements alone, or as one UNLOGGED batch (one request; applied atomically
        per partition, not across partitions)."""
        if len(statements) == 1:
            name, params = statements[0]
            await self._run(name, params)
            return
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for name, params in statements:
            batch.add(self._ps[name].bind(params))
        batch.is_idempotent = all(self._ps[name].is_idempotent for name, _ in statements)
        await self._execute(batch)
