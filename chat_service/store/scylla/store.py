"""The cluster chat store: ScyllaDB (or Apache Cassandra) through scylla-driver.

This class composes the parts: `session` (the driver session, its retry policy and the prepared
`statements`), `rounds` (the log-head round engine: every write that takes a seq, and the head
hints readers use to see the log complete), and `retention` (purging expired logs). Reads and
the writes that take no seq (titles, mutes, receipts, blocks, the outbox) are here. Every
operation is named and timed by `metrics.timed_operations`. See docs/storage.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..base import (
    AppendResult,
    BanRecord,
    ConflictError,
    ConversationRecord,
    EventKind,
    EventRecord,
    HeldRecord,
    HeldState,
    HistoryDirection,
    Kind,
    MemberRecord,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    NewReport,
    NotFoundError,
    OutboxEntry,
    ReportRecord,
    ReportStatus,
    Role,
    StoreError,
    SuspendedError,
    SuspensionRecord,
)
from ..metrics import timed_operations
from .held import Held
from .moderation import Moderation
from .retention import Retention
from .rounds import RoundEngine
from .schema import OUTBOX_SHARDS, valid_keyspace
from .session import CqlSession
from .statements import (
    bucket_of,
    head_from_row,
    member_from_row,
    message_from_row,
    outbox_shard,
)

DEFAULT_IDEMPOTENCY_TTL = 2 * 24 * 3600


@timed_operations("scylla")
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
        keyspace = valid_keyspace(keyspace)
        self._replication = dict(replication or {"class": "NetworkTopologyStrategy", local_dc: 3})
        self._migrate_on_open = migrate_on_open
        self._session = CqlSession(
            contact_points,
            port=port,
            local_dc=local_dc,
            keyspace=keyspace,
            consistency=consistency,
            serial_consistency=serial_consistency,
            request_timeout=request_timeout,
            cluster_options=cluster_options or {},
        )
        self._moderation = Moderation(self._session)
        self._held = Held(self._session)
        self._rounds = RoundEngine(self._session, idempotency_ttl, self._moderation.get_suspension)
        self._retention = Retention(self._session, self._rounds)

    # Lifecycle

    async def open(self) -> None:
        replication = self._replication if self._migrate_on_open else None
        await asyncio.to_thread(self._session.connect, replication)

    async def close(self) -> None:
        await self._rounds.wait_idle()
        await self._session.close()

    # Conversations

    async def create_conversation(self, new: NewConversation) -> tuple[ConversationRecord, bool]:
        if new.direct_key:
            existing = await self._session.run("get_direct", (new.direct_key,))
            if existing:
                return await self._existing_direct(existing[0].conversation_id), False
        suspension = await self._moderation.get_suspension(new.created_by)
        if suspension is not None:
            raise SuspendedError(suspension.refusal())
        initial = json.dumps([[u, int(r)] for u, r in new.members])
        created = await self._session.run(
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
            claim = await self._session.run("claim_direct", (new.direct_key, new.conversation_id))
            if not claim[0][0]:
                # Lost the race: drop the attempt (no member rows were written for it).
                await self._session.run("drop_conversation", (new.conversation_id,))
                return await self._existing_direct(claim[0].conversation_id), False
        await self._write_initial_members(new.conversation_id, new.members, new.created_at)
        await self._moderation.fence_if_suspended(new.conversation_id, [u for u, _ in new.members])
        return new.created(), True

    async def _write_initial_members(
        self, conversation_id: str, members: Sequence[tuple[str, Role]], at: float
    ) -> None:
        # Timestamp 0: idempotent, and never shadows a later membership event (timestamp = seq).
        await asyncio.gather(
            *(
                self._session.run("insert_initial_member", (conversation_id, u, int(r), at))
                for u, r in members
            ),
            *(
                self._session.run("add_initial_user_conversation", (u, conversation_id))
                for u, _ in members
            ),
        )

    async def _existing_direct(self, conversation_id: str) -> ConversationRecord:
        rows = await self._session.run("head", (conversation_id,))
        if not rows or rows[0].kind is None:
            raise StoreError(f"direct conversation {conversation_id} is missing")
        row = rows[0]
        # Roll forward a creator that died between claiming the key and writing its members.
        members = [(u, Role(r)) for u, r in json.loads(row.initial_members or "[]")]
        await self._write_initial_members(conversation_id, members, row.created_at or 0.0)
        head = head_from_row(row)
        assert head is not None
        return head.conversation

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        head = await self._rounds.read_head(conversation_id)
        return head.conversation if head else None

    async def update_conversation(
        self, conversation_id: str, title: str | None, archived: bool | None, at: float
    ) -> ConversationRecord:
        for name, value in (("set_title", title), ("set_archived", archived)):
            if value is not None:
                applied = await self._session.run(name, (value, conversation_id))
                if not applied[0][0]:
                    raise NotFoundError(f"conversation {conversation_id} not found")
        head = await self._rounds.read_head(conversation_id)
        if head is None:
            raise NotFoundError(f"conversation {conversation_id} not found")
        return head.conversation

    # Members

    async def get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None:
        return await self._get_member(conversation_id, user_id)

    async def _get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None:
        # The operations that read a member go through here, not through get_member: each
        # operation is timed once, under its own name.
        rows, prefs = await asyncio.gather(
            self._session.run("member", (conversation_id, user_id)),
            self._session.run("pref", (conversation_id, user_id)),
        )
        if not rows or rows[0].role is None:
            return None
        return member_from_row(rows[0], bool(prefs and prefs[0].muted))

    async def member_role(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, Role] | None:
        # One head read while this process knows the user's role as of that head (the
        # membership view); the member row otherwise. See rounds.role_as_of_head.
        found = await self._rounds.role_as_of_head(conversation_id, user_id)
        if found is None or not found[1]:
            return None
        head, role = found
        # A suspension binds through the fences it sets in the heads of the user's
        # conversations before it returns (and the round's LWT checks them): a user not
        # fenced here may write here. A fence is confirmed by the suspension row (a lifted
        # suspension may have left one behind).
        if user_id in head.fences:
            suspension = await self._moderation.get_suspension(user_id)
            if suspension is not None:
                raise SuspendedError(suspension.refusal())
        return head.conversation, Role(role)

    async def _require_member(self, conversation_id: str, user_id: str) -> MemberRecord:
        member = await self._get_member(conversation_id, user_id)
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
            rows = await self._session.run("members_page", (conversation_id, after, want))
            if not rows:
                break
            prefs = await self._session.run(
                "prefs_range", (conversation_id, rows[0].user_id, rows[-1].user_id)
            )
            muted = {p.user_id: bool(p.muted) for p in prefs}
            # Rows without a role are marker cells outliving a membership: not members.
            out.extend(
                member_from_row(r, muted.get(r.user_id, False)) for r in rows if r.role is not None
            )
            if len(rows) < want:
                break
            after = rows[-1].user_id
        return out

    async def member_ids(self, conversation_id: str) -> list[str]:
        return await self._member_ids(conversation_id)

    async def members_since(self, conversation_id: str, seq: int) -> list[str]:
        # No read while the membership view knows every member as of seq or later (this
        # process's own rounds keep it there); otherwise the partition is read and learned.
        known = self._rounds.members_since(conversation_id, seq)
        return known if known is not None else await self._member_ids(conversation_id)

    async def _member_ids(self, conversation_id: str) -> list[str]:
        # The seq known materialized before the read: the rows hold at least its membership.
        materialized = self._rounds.materialized_up_to(conversation_id)
        rows = await self._session.run("member_roles", (conversation_id,))
        roles = {r.user_id: int(r.role) for r in rows if r.role is not None}
        self._rounds.learn_members(conversation_id, materialized, roles)
        return list(roles)

    async def user_conversations(self, user_id: str) -> list[MemberRecord]:
        rows = await self._session.run("user_conversations", (user_id,))
        members = await asyncio.gather(
            *(self._get_member(r.conversation_id, user_id) for r in rows)
        )
        return [m for m in members if m is not None]

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        events = await self._rounds.change_members(conversation_id, actor_id, changes, at)
        added = [e.member_user_id for e in events if e.kind == EventKind.MEMBER_ADDED]
        # After the write: a suspension that listed the user's conversations before this add
        # did not fence this one, so the add does.
        await self._moderation.fence_if_suspended(conversation_id, added)
        return events

    async def set_muted(self, conversation_id: str, user_id: str, muted: bool) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        await self._session.run("set_muted", (muted, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    # Messages and the log

    async def append_message(self, new: NewMessage) -> AppendResult:
        return await self._rounds.append(new)

    async def edit_message(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        return await self._rounds.edit(conversation_id, seq, actor_id, body, at)

    async def delete_message(
        self, conversation_id: str, seq: int, actor_id: str, at: float, *, moderated: bool = False
    ) -> EventRecord:
        return await self._rounds.delete(conversation_id, seq, actor_id, at, moderated)

    async def get_message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        return await self._get_message(conversation_id, seq)

    async def _get_message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        # The head and the row in parallel; the row is only trusted when this process knew,
        # before both reads, that everything up to the head's last_seq was materialized.
        # Otherwise the last round is completed first (after a writer crash) and the row read
        # again.
        known = self._rounds.materialized_up_to(conversation_id)
        head, row = await asyncio.gather(
            self._rounds.read_head(conversation_id), self._rounds.message_row(conversation_id, seq)
        )
        if head is None or not head.conversation.first_seq <= seq <= head.conversation.last_seq:
            return None
        if head.conversation.last_seq > known:
            await self._rounds.roll_forward(conversation_id, head)
            row = await self._rounds.message_row(conversation_id, seq)
        return row

    async def get_message_by_id(
        self, conversation_id: str, message_id: str
    ) -> MessageRecord | None:
        rows = await self._session.run("message_by_id", (message_id,))
        if not rows or rows[0].conversation_id != conversation_id:
            # An id is written by its round's materialization: a round still in flight (or
            # one a crashed writer left) is completed first, then looked up again.
            head = await self._rounds.settled_head(conversation_id)
            if head is None:
                return None
            rows = await self._session.run("message_by_id", (message_id,))
            if not rows or rows[0].conversation_id != conversation_id:
                return None
        return await self._get_message(conversation_id, rows[0].seq)

    async def history(
        self,
        conversation_id: str,
        before_seq: int,
        after_seq: int,
        limit: int,
        direction: HistoryDirection = HistoryDirection.BACKWARD,
    ) -> list[MessageRecord]:
        head = await self._rounds.settled_head(conversation_id)
        if head is None or limit <= 0:
            return []
        last = head.conversation.last_seq
        hi = min(before_seq - 1, last) if before_seq > 0 else last
        lo = max(after_seq + 1, head.conversation.first_seq, 1)
        if hi < lo:
            return []
        ascending = direction == HistoryDirection.FORWARD
        buckets = range(bucket_of(lo), bucket_of(hi) + 1)
        out: list[MessageRecord] = []
        for bucket in buckets if ascending else reversed(buckets):
            name = "history_asc" if ascending else "history_desc"
            rows = await self._session.run(
                name, (conversation_id, bucket, lo, hi, limit - len(out))
            )
            out.extend(message_from_row(r) for r in rows)
            if len(out) >= limit:
                break
        return out

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[EventRecord]:
        head = await self._rounds.read_head(conversation_id)
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
            await self._rounds.roll_forward(conversation_id, head)
            rows = await self._events_range(conversation_id, lo, last, limit)
        by_bucket: dict[int, list[int]] = {}
        for row in rows:
            # An edit or delete of a purged message (below the horizon) has no message.
            if row.message_seq and row.message_seq >= first:
                by_bucket.setdefault(bucket_of(row.message_seq), []).append(row.message_seq)
        fetched = await asyncio.gather(
            *(
                self._session.run("messages_in", (conversation_id, b, sorted(set(seqs))))
                for b, seqs in by_bucket.items()
            )
        )
        messages = {m.seq: message_from_row(m) for page in fetched for m in page}
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
            rows = await self._session.run("outbox_scan", (shard, max(limit * 2, 64)))
            entries = await asyncio.gather(
                *(self._outbox_entry(r.conversation_id, tidy=True) for r in rows)
            )
            out.extend(e for e in entries if e is not None)
        return out[:limit]

    async def outbox_entry(self, conversation_id: str) -> OutboxEntry | None:
        return await self._outbox_entry(conversation_id, tidy=False)

    async def _outbox_entry(self, conversation_id: str, *, tidy: bool) -> OutboxEntry | None:
        head, relayed_rows = await asyncio.gather(
            self._rounds.read_head(conversation_id),
            self._session.run("relayed", (conversation_id,)),
        )
        relayed = relayed_rows[0].relayed_seq or 0 if relayed_rows else 0
        last = head.conversation.last_seq if head else 0
        if last > relayed:
            return OutboxEntry(conversation_id, relayed + 1, last)
        if tidy:
            # Timestamp = relayed seq: an index write for a newer round (timestamp > it) stays.
            await self._session.run(
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
            await self._session.run_batch(
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
                await self._session.run(
                    "events_range", (conversation_id, bucket, lo, hi, limit - len(rows))
                )
            )
            if len(rows) >= limit:
                break
        return rows

    # Retention

    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        return await self._retention.purge_expired(kind, before, limit)

    # Receipts and unread

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        seq = max(seq, 0)
        # Timestamp = value: a lower mark never overwrites a higher one.
        await self._session.run("mark_read", (seq, seq, seq, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    async def mark_delivered(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        await self._require_member(conversation_id, user_id)
        seq = max(seq, 0)
        await self._session.run("mark_delivered", (seq, seq, conversation_id, user_id))
        return await self._require_member(conversation_id, user_id)

    async def count_unread(self, conversation_id: str, user_id: str, after_seq: int) -> int:
        head = await self._rounds.settled_head(conversation_id)
        if head is None or head.conversation.last_seq <= after_seq:
            return 0
        start = max(after_seq, head.conversation.first_seq - 1, 0)
        pages = await asyncio.gather(
            *(
                self._session.run("unread_scan", (conversation_id, b, start))
                for b in range(bucket_of(start + 1), bucket_of(head.conversation.last_seq) + 1)
            )
        )
        return sum(1 for page in pages for r in page if r.sender_id != user_id and not r.deleted)

    # Blocks

    async def set_block(self, user_id: str, blocked_user_id: str, blocked: bool) -> None:
        if blocked:
            await self._session.run("set_block", (user_id, blocked_user_id, time.time()))
        else:
            await self._session.run("unset_block", (user_id, blocked_user_id))

    async def is_blocked(self, user_id: str, blocked_user_id: str) -> bool:
        return bool(await self._session.run("is_blocked", (user_id, blocked_user_id)))

    async def list_blocked(self, user_id: str) -> list[str]:
        return [r.blocked_user_id for r in await self._session.run("list_blocked", (user_id,))]

    # Moderation (see `moderation`)

    async def add_report(self, new: NewReport) -> tuple[ReportRecord, bool]:
        return await self._moderation.add_report(new)

    async def get_report(self, report_id: str) -> ReportRecord | None:
        return await self._moderation.get_report(report_id)

    async def list_reports(
        self, status: ReportStatus | None, after_report_id: str, limit: int
    ) -> list[ReportRecord]:
        return await self._moderation.list_reports(status, after_report_id, limit)

    async def resolve_report(
        self, report_id: str, resolved_by: str, resolution: str, at: float
    ) -> ReportRecord:
        return await self._moderation.resolve_report(report_id, resolved_by, resolution, at)

    async def set_ban(self, ban: BanRecord) -> None:
        await self._moderation.set_ban(ban)

    async def remove_ban(self, conversation_id: str, user_id: str) -> None:
        await self._moderation.remove_ban(conversation_id, user_id)

    async def get_ban(self, conversation_id: str, user_id: str) -> BanRecord | None:
        return await self._moderation.get_ban(conversation_id, user_id)

    async def set_suspension(self, suspension: SuspensionRecord) -> None:
        await self._moderation.set_suspension(suspension)

    async def remove_suspension(self, user_id: str) -> None:
        await self._moderation.remove_suspension(user_id)

    async def get_suspension(self, user_id: str) -> SuspensionRecord | None:
        return await self._moderation.get_suspension(user_id)

    # Messages held for review (see `held`)

    async def hold_message(
        self, new: NewMessage, reason: str, at: float
    ) -> tuple[HeldRecord, bool]:
        return await self._held.hold_message(new, reason, at)

    async def get_held(self, message_id: str) -> HeldRecord | None:
        return await self._held.get_held(message_id)

    async def list_held(self, after_message_id: str, limit: int) -> list[HeldRecord]:
        return await self._held.list_held(after_message_id, limit)

    async def decide_held(self, message_id: str, state: HeldState, by: str) -> HeldRecord:
        return await self._held.decide_held(message_id, state, by)
