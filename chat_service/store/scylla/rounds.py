"""The log-head round engine of the cluster store: how a conversation's log stays gapless.

(Details and the cost per message in docs/storage.md.)

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

`RoundEngine` owns the rounds and the per-conversation hints this process keeps (heads, how far
the log is known to be materialized, and the membership view of `membership`); readers use
`settled_head` and `roll_forward` to see the log complete up to its head, and `role_as_of_head`
answers access checks from the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import extras
from ..base import (
    AppendResult,
    ConflictError,
    ConversationRecord,
    EventKind,
    EventRecord,
    MembershipChange,
    MessageRecord,
    NewMessage,
    NotFoundError,
    NotMemberError,
    Role,
    StoreError,
    SuspendedError,
    SuspensionRecord,
    refuses_suspended,
)
from .membership import NOT_A_MEMBER, MembershipViews
from .session import CqlSession
from .statements import (
    Head,
    bucket_of,
    head_from_row,
    message_from_json,
    message_from_row,
    outbox_shard,
)

log = logging.getLogger(__name__)

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


@dataclass(slots=True)
class Op:
    """One write waiting for a round of its conversation."""

    kind: str  # "append" | "members" | "edit" | "delete"
    future: asyncio.Future[Any]
    new: NewMessage | None = None
    actor_id: str = ""
    at: float = 0.0
    changes: Sequence[MembershipChange] = ()
    seq: int = 0
    body: str = ""
    size: int = 0
    # A moderator's delete: the actor need not be a member.
    moderated: bool = False

    def writer(self) -> str:
        """The user a suspension fences out of this write ("" for none: a moderator's delete,
        or leaving, which a suspended user may still do)."""
        if self.kind == "append":
            assert self.new is not None
            return self.new.sender_id
        if self.kind == "members":
            return self.actor_id if refuses_suspended(self.actor_id, self.changes) else ""
        return "" if self.moderated else self.actor_id


@dataclass(slots=True)
class _Committer:
    queue: list[Op] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class RoundEngine:
    """Commits the writes that take seqs, one LWT per round; one committer per conversation."""

    def __init__(
        self,
        session: CqlSession,
        idempotency_ttl: int,
        suspension_of: Callable[[str], Awaitable[SuspensionRecord | None]],
    ) -> None:
        self._session = session
        self._ttl = idempotency_ttl
        # The stored suspension of a fenced writer: the refusal's reason, or (none) a fence
        # left behind by an unsuspension, which is then dropped.
        self._suspension_of = suspension_of
        self._committers: dict[str, _Committer] = {}
        # Per conversation: the head this process last committed or read, and the highest seq it
        # knows to be materialized. Both are hints; the LWT condition is what is trusted.
        self._heads: dict[str, Head] = {}
        self._materialized: dict[str, int] = {}
        # Per conversation: the roles of the users looked up, as of one seq (see membership).
        self._views = MembershipViews(MAX_CACHED_CONVERSATIONS, MAX_CACHED_MEMBERS)

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Lets every round in progress finish (its callers get their answers); rounds still
        running after `timeout_s` (a server that stopped answering) are cancelled."""
        tasks = [c.task for c in self._committers.values() if c.task is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            log.warning("a write round still running at close is cancelled")
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task

    # The writes that take seqs

    async def append(self, new: NewMessage) -> AppendResult:
        size = (
            len(new.body.encode())
            + len(extras.encode(new.attachments, new.attachment_info, new.mentions))
            + 256
        )
        result: AppendResult = await self._submit(
            new.conversation_id, Op("append", _future(), new=new, size=size)
        )
        return result

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        result: list[EventRecord] = await self._submit(
            conversation_id,
            Op("members", _future(), actor_id=actor_id, at=at, changes=list(changes)),
        )
        return result

    async def edit(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        result: EventRecord = await self._submit(
            conversation_id, Op("edit", _future(), actor_id=actor_id, at=at, seq=seq, body=body)
        )
        return result

    async def delete(
        self, conversation_id: str, seq: int, actor_id: str, at: float, moderated: bool = False
    ) -> EventRecord:
        op = Op("delete", _future(), actor_id=actor_id, at=at, seq=seq, moderated=moderated)
        result: EventRecord = await self._submit(conversation_id, op)
        return result

    # The head and its hints

    def materialized_up_to(self, conversation_id: str) -> int:
        """The highest seq this process knows to be materialized (0: none known)."""
        return self._materialized.get(conversation_id, 0)

    def raise_horizon(self, conversation_id: str, first_seq: int) -> None:
        """Moves the cached head's retention horizon up to `first_seq` (never down)."""
        cached = self._heads.get(conversation_id)
        if cached is not None and cached.conversation.first_seq < first_seq:
            cached.conversation = dataclasses.replace(cached.conversation, first_seq=first_seq)

    async def read_head(self, conversation_id: str, *, serial: bool = False) -> Head | None:
        rows = await self._session.run("head", (conversation_id,), serial=serial)
        head = head_from_row(rows[0] if rows else None)
        if head is not None:
            self.remember(conversation_id, head)
        return head

    def remember(self, conversation_id: str, head: Head) -> None:
        if len(self._heads) >= MAX_CACHED_CONVERSATIONS:
            # Hints only: dropping them costs a read, never correctness.
            self._heads.clear()
            self._materialized.clear()
            self._views.clear()
        self._heads[conversation_id] = head
        # The head carries its last round's events: a view just before them follows them.
        self._views.catch_up(conversation_id, head.conversation.last_seq, head.pending)

    async def role_as_of_head(self, conversation_id: str, user_id: str) -> tuple[Head, int] | None:
        """The head read now and the user's role as of it (0: not a member); None when the
        conversation does not exist. One head read while the view knows the user as of that
        head; otherwise also the member row (learned when the log is known materialized up to
        the head, so the row holds at least the head's membership)."""
        head = await self.read_head(conversation_id)
        if head is None:
            return None
        last = head.conversation.last_seq
        role = self._views.role_at(conversation_id, last, user_id)
        if role is None:
            materialized = self._materialized.get(conversation_id, 0) >= last
            rows = await self._session.run("member", (conversation_id, user_id))
            role = int(rows[0].role or NOT_A_MEMBER) if rows else NOT_A_MEMBER
            if materialized:
                self._views.learn(conversation_id, last, {user_id: role})
        return head, role

    def members_since(self, conversation_id: str, seq: int) -> list[str] | None:
        """Every member as of `seq` or later, when the membership view knows them all."""
        return self._views.members_since(conversation_id, seq)

    def learn_members(self, conversation_id: str, seq: int, members: Mapping[str, int]) -> None:
        """Every member, read from the whole member partition after the log was known to be
        materialized up to `seq`."""
        self._views.learn_all(conversation_id, seq, members)

    async def message_row(self, conversation_id: str, seq: int) -> MessageRecord | None:
        """The message row as it is (for callers that have rolled the head forward)."""
        if seq <= 0:
            return None
        rows = await self._session.run("message", (conversation_id, bucket_of(seq), seq))
        return message_from_row(rows[0]) if rows else None

    async def settled_head(self, conversation_id: str) -> Head | None:
        """The head, with its last round materialized: rows up to last_seq can be read.

        One head read (which carries `pending`); the `event_exists` check only when this
        process does not know the round to be materialized, and writes only after a crash.
        """
        head = await self.read_head(conversation_id)
        if head is not None:
            await self.roll_forward(conversation_id, head)
        return head

    # The committer: one task per conversation per process, one LWT per round

    async def _submit(self, conversation_id: str, op: Op) -> Any:
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
    def _take_round(queue: list[Op]) -> list[Op]:
        if queue[0].kind != "append":
            return [queue.pop(0)]
        batch: list[Op] = []
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

    async def _round(self, conversation_id: str, ops: list[Op]) -> None:
        head = self._heads.get(conversation_id) or await self.read_head(conversation_id)
        attempt = 0
        while True:
            if head is None:
                raise NotFoundError(f"conversation {conversation_id} not found")
            await self.roll_forward(conversation_id, head)
            ops = await self._refuse_fenced(conversation_id, head, ops)
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
            head = await self.read_head(conversation_id, serial=True)

    async def roll_forward(self, conversation_id: str, head: Head) -> None:
        """Makes sure the events of the head's round are materialized."""
        last = head.conversation.last_seq
        if last == 0 or self._materialized.get(conversation_id, 0) >= last:
            return
        exists = await self._session.run("event_exists", (conversation_id, bucket_of(last), last))
        if not exists:
            log.info("rolling forward %s up to seq %d", conversation_id, last)
            await self._materialize(conversation_id, head.pending)
        self._materialized[conversation_id] = max(self._materialized.get(conversation_id, 0), last)

    async def _outbox_add(self, conversation_id: str, up_to_seq: int) -> None:
        # The outbox learns of a round before it can commit: timestamp = the seq it would take,
        # so clear_outbox (deleting at the relayed seq) never drops it. See docs/storage.md.
        await self._session.run(
            "outbox_add", (outbox_shard(conversation_id), conversation_id, up_to_seq)
        )

    async def _advance(
        self,
        head: Head,
        events: list[dict[str, Any]],
        member_delta: int,
        keys: Sequence[Any],
        writers: Sequence[str],
        *,
        indexed_at: int = -1,
    ) -> tuple[bool, list[Any]]:
        """The LWT: last_seq n -> n + len(events), if no writer is fenced. Returns (applied,
        rows on failure).

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
        updated_at = max(e["at"] for e in events)
        advance = self._session.bind(
            "advance",
            (
                last + len(events),
                conversation.member_count + member_delta,
                updated_at,
                pending,
                cid,
                last,
            ),
        )
        if keys or writers:
            statement: Any = BatchStatement()
            statement.add(advance)
            for sender_id, client_msg_id, seq in keys:
                statement.add(
                    self._session.bind("claim_key", (cid, sender_id, client_msg_id, seq, self._ttl))
                )
            # A suspension fenced after the head was read fails the whole round.
            for writer in sorted(set(writers)):
                statement.add(self._session.bind("fence_check", (updated_at, cid, writer)))
        else:
            statement = advance
        try:
            rows = await self._session.execute(statement)
        except Exception as exc:
            from cassandra import OperationTimedOut, WriteTimeout

            if not isinstance(exc, (WriteTimeout, OperationTimedOut)):
                raise
            # Outcome unknown: a serial read completes or discards the proposal; then look.
            log.warning("LWT on %s timed out; checking its outcome", cid)
            current = await self._session.run("head", (cid,), serial=True)
            seen = json.loads(current[0].pending or "{}") if current else {}
            if not (isinstance(seen, dict) and seen.get("round") == round_id):
                self._heads.pop(cid, None)
                return False, []
            rows = [(True,)]
        if rows and rows[0][0]:
            new_head = Head(
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
                dict(head.fences),
            )
            # remember() moves the membership view over the round's events (new_head.pending).
            self.remember(cid, new_head)
            await self._materialize(cid, events)
            self._materialized[cid] = max(self._materialized.get(cid, 0), last + len(events))
            return True, []
        self._heads.pop(cid, None)
        return False, rows

    async def _refuse_fenced(self, conversation_id: str, head: Head, ops: list[Op]) -> list[Op]:
        """Answers the ops of writers the head fences out (SuspendedError; a retried key of a
        message stored before is still a duplicate); returns the others. A fence whose user is
        no longer suspended was left behind by an unsuspension: it is dropped (only if it is
        still that suspension's, so a new suspension's fence stays)."""
        kept: list[Op] = []
        for op in ops:
            if op.future.done():
                continue
            writer = op.writer()
            fenced_at = head.fences.get(writer) if writer else None
            if fenced_at is None:
                kept.append(op)
                continue
            suspension = await self._suspension_of(writer)
            if suspension is None:
                await self._session.run("drop_fence", (writer, conversation_id, writer, fenced_at))
                head.fences.pop(writer, None)
                kept.append(op)
            elif op.kind == "append" and (stored := await self._stored_key(op)) is not None:
                op.future.set_result(AppendResult(stored, duplicate=True))
            else:
                op.future.set_exception(SuspendedError(suspension.refusal()))
        return kept

    async def _stored_key(self, op: Op) -> MessageRecord | None:
        assert op.new is not None
        key = await self._session.run(
            "get_key", (op.new.conversation_id, op.new.sender_id, op.new.client_msg_id)
        )
        if not key or not key[0].msg_seq:
            return None
        return await self.message_row(op.new.conversation_id, key[0].msg_seq)

    async def _refuse_non_members(
        self, conversation_id: str, head: Head, ops: list[Op], index_at: int
    ) -> tuple[list[Op], int]:
        """Answers the appends of senders who are not members (as of the rolled-forward head);
        returns the others, and the timestamp of the outbox index write made meanwhile (-1:
        none). A retried key is still answered as a duplicate, as by the SQLite store.
        Serializable: membership only changes by taking a seq, which the LWT guards; so senders
        known to be members as of the head's seq are not read again."""
        last = head.conversation.last_seq
        roles = {
            op.new.sender_id: self._views.role_at(conversation_id, last, op.new.sender_id)
            for op in ops
            if op.new is not None
        }
        senders = sorted(u for u, role in roles.items() if role is None)
        # The index write (needed before the LWT anyway) goes in parallel with the reads, at
        # the highest seq the round can take (a lower round leaves a stale index row at worst,
        # which the sweep skips).
        if senders:
            *found, _ = await asyncio.gather(
                *(self._session.run("member", (conversation_id, u)) for u in senders),
                self._outbox_add(conversation_id, index_at),
            )
            read = {
                u: int(rows[0].role or NOT_A_MEMBER) if rows else NOT_A_MEMBER
                for u, rows in zip(senders, found, strict=True)
            }
            # The caller rolled the head forward: the rows hold at least its membership.
            self._views.learn(conversation_id, last, read)
            roles.update(read)
        else:
            index_at = -1
        members = {u for u, role in roles.items() if role}
        if len(members) == len(roles):
            return ops, index_at
        kept: list[Op] = []
        for op in ops:
            assert op.new is not None
            if op.new.sender_id in members:
                kept.append(op)
                continue
            key = await self._session.run(
                "get_key", (conversation_id, op.new.sender_id, op.new.client_msg_id)
            )
            stored = (
                await self.message_row(conversation_id, key[0].msg_seq)
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

    async def _try_appends(self, conversation_id: str, head: Head, ops: list[Op]) -> bool:
        distinct = len({(op.new.sender_id, op.new.client_msg_id) for op in ops if op.new})
        ops, indexed_at = await self._refuse_non_members(
            conversation_id, head, ops, head.conversation.last_seq + distinct
        )
        if not ops:
            return True
        last = head.conversation.last_seq
        events: list[dict[str, Any]] = []
        owners: dict[tuple[str, str], list[Op]] = {}
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
                        # The encoded column value (a string; older rounds hold a list).
                        "attachments": extras.encode(
                            new.attachments, new.attachment_info, new.mentions
                        ),
                        "reply_to_seq": new.reply_to_seq,
                        "client_msg_id": new.client_msg_id,
                    },
                }
            )
        keys = [
            (e["message"]["sender_id"], e["message"]["client_msg_id"], e["seq"]) for e in events
        ]
        writers = [op.new.sender_id for op in ops if op.new is not None]
        applied, rows = await self._advance(head, events, 0, keys, writers, indexed_at=indexed_at)
        if applied:
            for event in events:
                message = message_from_json(conversation_id, event["message"])
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
            now = await self.read_head(conversation_id, serial=True)
            if now is not None:
                await self.roll_forward(conversation_id, now)
            for key, seq in taken.items():
                stored = await self.message_row(conversation_id, seq)
                for op in owners[key]:
                    if stored is None:
                        op.future.set_exception(StoreError(f"message {seq} is missing"))
                    else:
                        op.future.set_result(AppendResult(stored, duplicate=True))
        return False

    async def _try_single(self, conversation_id: str, head: Head, op: Op) -> bool:
        last = head.conversation.last_seq
        if op.kind == "members":
            planned, delta, results = await self._plan_members(conversation_id, head, op)
            if not planned:
                op.future.set_result([])
                return True
            applied, _ = await self._advance(head, planned, delta, (), _writers(op))
            if applied:
                op.future.set_result(results)
            return applied
        # An edit or a delete of message op.seq, by a member (or a moderator).
        role = None if op.moderated else self._views.role_at(conversation_id, last, op.actor_id)
        if role is None and not op.moderated:
            actor = await self._session.run("member", (conversation_id, op.actor_id))
            role = int(actor[0].role or NOT_A_MEMBER) if actor else NOT_A_MEMBER
            self._views.learn(conversation_id, last, {op.actor_id: role})
        if not op.moderated and not role:
            raise NotMemberError(f"not a member of conversation {conversation_id}")
        current = (
            await self.message_row(conversation_id, op.seq)
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
            updated = dataclasses.replace(
                current, body="", attachments=(), attachment_info=(), mentions=(), deleted=True
            )
        event = {
            "seq": seq,
            "kind": int(kind),
            "actor": op.actor_id,
            "at": op.at,
            "target": op.seq,
            "body": op.body,
            "version": updated.version,
        }
        applied, _ = await self._advance(head, [event], 0, (), _writers(op))
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
        self, conversation_id: str, head: Head, op: Op
    ) -> tuple[list[dict[str, Any]], int, list[EventRecord]]:
        users = sorted({c.user_id for c in op.changes})
        found = await asyncio.gather(
            *(self._session.run("member", (conversation_id, u)) for u in users)
        )
        roles: dict[str, int | None] = {
            u: (rows[0].role if rows else None) for u, rows in zip(users, found, strict=True)
        }
        self._views.learn(
            conversation_id,
            head.conversation.last_seq,
            {u: int(role or NOT_A_MEMBER) for u, role in roles.items()},
        )
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
                        m["attachments"]
                        if isinstance(m["attachments"], str)
                        else json.dumps(m["attachments"]),
                        m["reply_to_seq"],
                        m["client_msg_id"],
                        bucket_of(seq),
                        seq,
                    ),
                )
                add(("members", cid), "mark_read", (seq, seq, seq, cid, m["sender_id"]))
                add(
                    ("messages_by_id", m["message_id"]),
                    "insert_message_id",
                    (m["message_id"], cid, seq),
                )
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
            await self._session.run_batch(statements)
        else:
            await asyncio.gather(*(self._session.run_batch(group) for group in groups.values()))

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
            await self._session.run_batch(by_bucket[bucket])


def _writers(op: Op) -> tuple[str, ...]:
    writer = op.writer()
    return (writer,) if writer else ()


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()
