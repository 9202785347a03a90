"""The ChatStore contract: what chat_service relies on from any store, embedded or cluster.

`ChatStoreContract` holds the tests; a backend runs them by being a param of the `store_backend`
fixture (tests/store/conftest.py). Every test uses fresh conversation and user ids, so a backend
whose storage outlives one test (a shared CQL keyspace) still sees only its own data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import pytest
from prometheus_client import REGISTRY

from chat_service.store.base import (
    AppendResult,
    BanRecord,
    ChatStore,
    ConflictError,
    ConversationRecord,
    EventKind,
    EventRecord,
    HeldState,
    HistoryDirection,
    Kind,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    NewReport,
    NotMemberError,
    Role,
    StoreError,
    SuspendedError,
    SuspensionRecord,
)
from chat_service.store.metrics import OPERATIONS
from chatmesh_common.ids import new_id

TEXT = 1
BACKWARD, FORWARD = HistoryDirection.BACKWARD, HistoryDirection.FORWARD


class StoreBackend(Protocol):
    """Opens stores on one piece of storage; every store it opens sees the same data."""

    # The `store` label of the backend's operations in chatmesh_store_op_seconds.
    metrics_label: str

    async def open(self) -> ChatStore:
        """A new, opened store instance on this backend's storage."""
        ...

    async def close_all(self) -> None:
        """Closes every store this backend opened that is still open."""
        ...


_counter = itertools.count(1)


def user(name: str) -> str:
    """A user id unique to this test run, readable in failures."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def new_conversation(
    created_by: str,
    others: Sequence[str] = (),
    kind: Kind = Kind.GROUP,
    title: str = "a title",
    direct_key: str = "",
    conversation_id: str | None = None,
) -> NewConversation:
    creator_role = Role.MEMBER if kind == Kind.DIRECT else Role.OWNER
    return NewConversation(
        conversation_id=conversation_id or new_id(),
        kind=kind,
        title=title,
        created_by=created_by,
        created_at=time.time(),
        members=[(created_by, creator_role), *((u, Role.MEMBER) for u in others)],
        direct_key=direct_key,
    )


def new_message(
    conversation_id: str,
    sender_id: str,
    body: str = "hello",
    client_msg_id: str | None = None,
    attachments: tuple[str, ...] = (),
    reply_to_seq: int = 0,
) -> NewMessage:
    return NewMessage(
        conversation_id=conversation_id,
        sender_id=sender_id,
        client_msg_id=client_msg_id or f"cmid-{next(_counter)}",
        message_id=new_id(),
        created_at=time.time(),
        kind=TEXT,
        body=body,
        attachments=attachments,
        reply_to_seq=reply_to_seq,
    )


def _comparable(record: Any) -> dict[str, Any]:
    """A record as a dict with times rounded to the millisecond (what every backend keeps)."""
    fields = dataclasses.asdict(record)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()}


def assert_same(actual: Any, expected: Any) -> None:
    assert _comparable(actual) == _comparable(expected)


async def group_with(
    store: ChatStore, owner: str, others: Sequence[str] = ()
) -> ConversationRecord:
    conversation, created = await store.create_conversation(new_conversation(owner, others))
    assert created
    return conversation


async def send_many(
    store: ChatStore, conversation_id: str, sender: str, count: int
) -> list[MessageRecord]:
    """Appends `count` messages one after another; returns them in seq order."""
    out = []
    for i in range(count):
        result = await store.append_message(new_message(conversation_id, sender, f"m{i + 1}"))
        out.append(result.message)
    return out


async def log_of(store: ChatStore, conversation_id: str) -> list[EventRecord]:
    return await store.events_after(conversation_id, 0, 10_000)


async def exercise_moderation(store: ChatStore, conversation_id: str, user_id: str) -> None:
    """Calls each moderation operation once (reports, bans, suspensions, held messages)."""
    report, _ = await store.add_report(
        NewReport(new_id(), user_id, 1, "", conversation_id, 0, "", user("dave"), time.time())
    )
    await store.get_report(report.report_id)
    await store.list_reports(None, "", 1)
    await store.resolve_report(report.report_id, "ops", "", time.time())
    await store.set_ban(BanRecord(conversation_id, user_id, "ops", time.time(), ""))
    await store.get_ban(conversation_id, user_id)
    await store.remove_ban(conversation_id, user_id)
    await store.set_suspension(SuspensionRecord(user_id, "ops", time.time(), ""))
    await store.get_suspension(user_id)
    await store.remove_suspension(user_id)
    held = new_message(conversation_id, user("erin"), "held")
    await store.hold_message(held, "held word", time.time())
    await store.get_held(held.message_id)
    await store.list_held("", 1)
    await store.decide_held(held.message_id, HeldState.DROPPED, "ops")


def timed_count(store_label: str, op: str) -> float:
    """How many `op` calls chatmesh_store_op_seconds has seen on that store so far."""
    labels = {"store": store_label, "op": op}
    return REGISTRY.get_sample_value("chatmesh_store_op_seconds_count", labels) or 0.0


def error_count(store_label: str, op: str, error: str) -> float:
    labels = {"store": store_label, "op": op, "error": error}
    return REGISTRY.get_sample_value("chatmesh_store_op_errors_total", labels) or 0.0


class ChatStoreContract:
    """Every ChatStore implementation passes these."""

    # Conversations

    async def test_created_conversation_is_returned_by_get(self, store: ChatStore) -> None:
        """A new conversation comes back from get_conversation as created, with its members."""
        alice, bob = user("alice"), user("bob")
        new = new_conversation(alice, [bob], title="plans")
        record, created = await store.create_conversation(new)
        assert created
        assert record.conversation_id == new.conversation_id
        assert (record.kind, record.title, record.created_by) == (Kind.GROUP, "plans", alice)
        assert (record.last_seq, record.member_count, record.archived) == (0, 2, False)
        fetched = await store.get_conversation(new.conversation_id)
        assert fetched is not None
        assert_same(fetched, record)
        owner = await store.get_member(new.conversation_id, alice)
        member = await store.get_member(new.conversation_id, bob)
        assert owner is not None and owner.role == Role.OWNER
        assert member is not None and member.role == Role.MEMBER
        assert (member.last_read_seq, member.last_delivered_seq, member.muted) == (0, 0, False)

    async def test_unknown_conversation_is_none(self, store: ChatStore) -> None:
        """get_conversation and get_member of an id never created return None."""
        assert await store.get_conversation(new_id()) is None
        assert await store.get_member(new_id(), user("alice")) is None

    async def test_direct_key_returns_existing_conversation(self, store: ChatStore) -> None:
        """A second create with one direct_key returns the first conversation, created False."""
        alice, bob = user("alice"), user("bob")
        key = f"{alice}|{bob}"
        first, created = await store.create_conversation(
            new_conversation(alice, [bob], kind=Kind.DIRECT, direct_key=key)
        )
        assert created
        second_new = new_conversation(bob, [alice], kind=Kind.DIRECT, direct_key=key)
        second, created_again = await store.create_conversation(second_new)
        assert not created_again
        assert second.conversation_id == first.conversation_id
        assert await store.get_conversation(second_new.conversation_id) is None
        assert sorted(await store.member_ids(first.conversation_id)) == sorted([alice, bob])

    async def test_concurrent_direct_creates_make_one_conversation(self, store: ChatStore) -> None:
        """Racing creates of one direct_key return one conversation, created exactly once."""
        alice, bob = user("alice"), user("bob")
        key = f"{alice}|{bob}"
        results = await asyncio.gather(
            *(
                store.create_conversation(
                    new_conversation(alice, [bob], kind=Kind.DIRECT, direct_key=key)
                )
                for _ in range(20)
            )
        )
        assert len({r.conversation_id for r, _ in results}) == 1
        assert sum(created for _, created in results) == 1

    async def test_update_conversation_sets_title_and_archived(self, store: ChatStore) -> None:
        """update_conversation changes what it is given and keeps what is None."""
        conversation = await group_with(store, user("alice"))
        cid = conversation.conversation_id
        updated = await store.update_conversation(cid, "renamed", None, time.time())
        assert (updated.title, updated.archived) == ("renamed", False)
        updated = await store.update_conversation(cid, None, True, time.time())
        assert (updated.title, updated.archived) == ("renamed", True)
        fetched = await store.get_conversation(cid)
        assert fetched is not None and (fetched.title, fetched.archived) == ("renamed", True)

    # Appends: order and idempotency

    async def test_concurrent_appends_get_gapless_seqs(self, store: ChatStore) -> None:
        """200 concurrent appends from 10 senders take seqs 1..200 once each; history agrees."""
        senders = [user(f"s{i}") for i in range(10)]
        conversation = await group_with(store, senders[0], senders[1:])
        cid = conversation.conversation_id
        results = await asyncio.gather(
            *(
                store.append_message(new_message(cid, senders[i % 10], f"body {i}"))
                for i in range(200)
            )
        )
        seqs = sorted(r.message.seq for r in results)
        assert seqs == list(range(1, 201))
        assert not any(r.duplicate for r in results)
        fetched = await store.get_conversation(cid)
        assert fetched is not None and fetched.last_seq == 200
        by_seq = {r.message.seq: r.message for r in results}
        history = await store.history(cid, 0, 0, 500)
        assert [m.seq for m in history] == list(range(200, 0, -1))
        for message in history:
            assert message.message_id == by_seq[message.seq].message_id
            assert message.body == by_seq[message.seq].body
        assert [e.seq for e in await log_of(store, cid)] == list(range(1, 201))

    async def test_retried_append_returns_original(self, store: ChatStore) -> None:
        """A retry with the same client_msg_id returns the original message and stores nothing."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        first = await store.append_message(new_message(cid, alice, "first", client_msg_id="k1"))
        retry = await store.append_message(new_message(cid, alice, "second", client_msg_id="k1"))
        assert not first.duplicate
        assert retry.duplicate
        assert retry.message.seq == first.message.seq
        assert retry.message.message_id == first.message.message_id
        assert retry.message.body == "first"
        fetched = await store.get_conversation(cid)
        assert fetched is not None and fetched.last_seq == 1
        assert len(await store.history(cid, 0, 0, 10)) == 1
        assert len(await log_of(store, cid)) == 1

    async def test_concurrent_retries_store_one_message(self, store: ChatStore) -> None:
        """Racing appends with one client_msg_id store one message; all return it."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        results: list[AppendResult] = await asyncio.gather(
            *(
                store.append_message(new_message(cid, alice, client_msg_id="same"))
                for _ in range(20)
            )
        )
        assert sum(not r.duplicate for r in results) == 1
        assert {(r.message.seq, r.message.message_id) for r in results} == {
            (1, results[0].message.message_id)
        }
        assert len(await log_of(store, cid)) == 1

    async def test_client_msg_id_is_scoped_to_sender(self, store: ChatStore) -> None:
        """Two senders using the same client_msg_id get two messages."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        a = await store.append_message(new_message(cid, alice, client_msg_id="k"))
        b = await store.append_message(new_message(cid, bob, client_msg_id="k"))
        assert not b.duplicate
        assert (a.message.seq, b.message.seq) == (1, 2)

    async def test_client_msg_id_is_scoped_to_conversation(self, store: ChatStore) -> None:
        """One sender reusing a client_msg_id in another conversation gets a new message there."""
        alice = user("alice")
        one = (await group_with(store, alice)).conversation_id
        two = (await group_with(store, alice)).conversation_id
        await store.append_message(new_message(one, alice, client_msg_id="k"))
        other = await store.append_message(new_message(two, alice, client_msg_id="k"))
        assert not other.duplicate
        assert (other.message.conversation_id, other.message.seq) == (two, 1)

    async def test_message_fields_round_trip(self, store: ChatStore) -> None:
        """Everything an append stores comes back from get_message and history."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await store.append_message(new_message(cid, alice, "first"))
        new = new_message(
            cid, alice, "ünïcödé €", attachments=("media-1", "media-2"), reply_to_seq=1
        )
        appended = (await store.append_message(new)).message
        assert (appended.seq, appended.version, appended.deleted) == (2, 1, False)
        assert appended.edited_at is None
        stored = await store.get_message(cid, 2)
        assert stored is not None
        assert_same(stored, appended)
        assert stored.body == "ünïcödé €"
        assert stored.attachments == ("media-1", "media-2")
        assert (stored.reply_to_seq, stored.sender_id, stored.client_msg_id) == (
            1,
            alice,
            new.client_msg_id,
        )
        assert stored.message_id == new.message_id
        assert await store.get_message(cid, 3) is None

    async def test_append_to_unknown_conversation_is_refused(self, store: ChatStore) -> None:
        """An append to a conversation that does not exist raises a StoreError."""
        with pytest.raises(StoreError):
            await store.append_message(new_message(new_id(), user("alice")))

    async def test_append_by_non_member_is_refused(self, store: ChatStore) -> None:
        """An append by a user who is not a member raises NotMemberError and writes nothing."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], time.time()
        )
        for sender in (bob, user("mallory")):
            with pytest.raises(NotMemberError):
                await store.append_message(new_message(cid, sender))
        assert [e.seq for e in await log_of(store, cid)] == [1]
        assert await store.history(cid, 0, 0, 10) == []

    async def test_edit_by_removed_member_is_refused(self, store: ChatStore) -> None:
        """A sender removed from the conversation can no longer edit its message."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await store.append_message(new_message(cid, bob, "bob's"))
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], time.time()
        )
        with pytest.raises(NotMemberError):
            await store.edit_message(cid, 1, bob, "edited after removal", time.time())
        stored = await store.get_message(cid, 1)
        assert stored is not None and (stored.body, stored.version) == ("bob's", 1)
        assert [e.seq for e in await log_of(store, cid)] == [1, 2]

    async def test_refused_write_does_not_sink_concurrent_writes(self, store: ChatStore) -> None:
        """Writes racing a refused one all succeed, still gapless."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        outcomes = await asyncio.gather(
            *(store.append_message(new_message(cid, alice)) for _ in range(10)),
            store.append_message(new_message(new_id(), alice)),
            *(store.append_message(new_message(cid, alice)) for _ in range(10)),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        results = [o for o in outcomes if isinstance(o, AppendResult)]
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        assert sorted(r.message.seq for r in results) == list(range(1, 21))

    # Membership

    async def test_membership_changes_take_seqs(self, store: ChatStore) -> None:
        """Adds, role changes, removals and leaves each take the next seq, in the log."""
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await store.append_message(new_message(cid, alice))
        events = await store.change_members(
            cid,
            alice,
            [
                MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(carol, EventKind.MEMBER_ROLE_CHANGED, Role.ADMIN),
                MembershipChange(carol, EventKind.MEMBER_REMOVED),
            ],
            time.time(),
        )
        left = await store.change_members(
            cid, bob, [MembershipChange(bob, EventKind.MEMBER_LEFT)], time.time()
        )
        assert [(e.seq, e.kind, e.member_user_id, e.member_role) for e in [*events, *left]] == [
            (2, EventKind.MEMBER_ADDED, carol, Role.MEMBER),
            (3, EventKind.MEMBER_ROLE_CHANGED, carol, Role.ADMIN),
            (4, EventKind.MEMBER_REMOVED, carol, None),
            (5, EventKind.MEMBER_LEFT, bob, None),
        ]
        log = await log_of(store, cid)
        assert [(e.seq, e.kind, e.actor_id, e.member_user_id) for e in log[1:]] == [
            (2, EventKind.MEMBER_ADDED, alice, carol),
            (3, EventKind.MEMBER_ROLE_CHANGED, alice, carol),
            (4, EventKind.MEMBER_REMOVED, alice, carol),
            (5, EventKind.MEMBER_LEFT, bob, bob),
        ]
        assert all(e.message is None for e in log[1:])
        assert await store.member_ids(cid) == [alice]
        fetched = await store.get_conversation(cid)
        assert fetched is not None and fetched.last_seq == 5

    async def test_membership_noops_take_no_seq(self, store: ChatStore) -> None:
        """Adding a member, removing a non-member or setting a role it has writes no event."""
        alice, bob, dave = user("alice"), user("bob"), user("dave")
        cid = (await group_with(store, alice, [bob])).conversation_id
        events = await store.change_members(
            cid,
            alice,
            [
                MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(dave, EventKind.MEMBER_REMOVED),
                MembershipChange(dave, EventKind.MEMBER_LEFT),
                MembershipChange(bob, EventKind.MEMBER_ROLE_CHANGED, Role.MEMBER),
            ],
            time.time(),
        )
        assert events == []
        assert await log_of(store, cid) == []
        fetched = await store.get_conversation(cid)
        assert fetched is not None and (fetched.last_seq, fetched.member_count) == (0, 2)

    async def test_noops_in_a_batch_leave_no_gap(self, store: ChatStore) -> None:
        """A batch mixing real changes and no-ops numbers only the real ones, without gaps."""
        alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
        cid = (await group_with(store, alice, [bob])).conversation_id
        events = await store.change_members(
            cid,
            alice,
            [
                MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(dave, EventKind.MEMBER_ADDED, Role.ADMIN),
            ],
            time.time(),
        )
        assert [(e.seq, e.member_user_id) for e in events] == [(1, carol), (2, dave)]
        assert [e.seq for e in await log_of(store, cid)] == [1, 2]
        dave_member = await store.get_member(cid, dave)
        assert dave_member is not None and dave_member.role == Role.ADMIN

    async def test_role_change_of_non_member_is_refused(self, store: ChatStore) -> None:
        """A role change for a non-member raises a StoreError and writes nothing."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        with pytest.raises(StoreError):
            await store.change_members(
                cid,
                alice,
                [MembershipChange(user("dave"), EventKind.MEMBER_ROLE_CHANGED, Role.ADMIN)],
                time.time(),
            )
        assert await log_of(store, cid) == []

    async def test_member_count_follows_membership(self, store: ChatStore) -> None:
        """member_count counts the members after every add, removal, leave and no-op."""
        alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
        cid = (await group_with(store, alice, [bob])).conversation_id

        async def count() -> int:
            record = await store.get_conversation(cid)
            assert record is not None
            return record.member_count

        assert await count() == 2
        await store.change_members(
            cid,
            alice,
            [
                MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(dave, EventKind.MEMBER_ADDED, Role.MEMBER),
                MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER),
            ],
            time.time(),
        )
        assert await count() == 4
        await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_REMOVED)], time.time()
        )
        assert await count() == 3
        await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_REMOVED)], time.time()
        )
        assert await count() == 3
        await store.change_members(
            cid, dave, [MembershipChange(dave, EventKind.MEMBER_LEFT)], time.time()
        )
        assert await count() == 2
        assert await count() == len(await store.member_ids(cid))

    async def test_member_role_is_the_role_now(self, store: ChatStore) -> None:
        """member_role answers the conversation as it is and the role now; None for others."""
        alice, bob, mallory = user("alice"), user("bob"), user("mallory")
        cid = (await group_with(store, alice, [bob])).conversation_id
        found = await store.member_role(cid, alice)
        assert found is not None and found[1] == Role.OWNER
        assert_same(found[0], await store.get_conversation(cid))
        assert await store.member_role(cid, mallory) is None
        assert await store.member_role(new_id(), alice) is None
        await store.append_message(new_message(cid, bob))
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ROLE_CHANGED, Role.ADMIN)], 1.0
        )
        found = await store.member_role(cid, bob)
        assert found is not None and found[1] == Role.ADMIN and found[0].last_seq == 2
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], 1.0
        )
        assert await store.member_role(cid, bob) is None

    async def test_member_role_refuses_a_suspended_member(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """Once set_suspension returns, member_role of the user raises SuspendedError through
        any store (one that has just answered it included); lifting it lets the user back."""
        other = await store_backend.open()
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        assert await other.member_role(cid, bob) is not None
        await store.set_suspension(SuspensionRecord(bob, "ops", time.time(), "spam"))
        for reader in (store, other):
            with pytest.raises(SuspendedError):
                await reader.member_role(cid, bob)
        assert await other.member_role(cid, user("mallory")) is None
        await store.remove_suspension(bob)
        found = await other.member_role(cid, bob)
        assert found is not None and found[1] == Role.MEMBER

    async def test_members_since_a_seq_follow_membership_events(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """members_since(seq) are the members as of that event or later, through any store."""
        other = await store_backend.open()
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        cid = (await group_with(store, alice, [bob])).conversation_id
        sent = await store.append_message(new_message(cid, alice))
        assert sorted(await store.members_since(cid, sent.message.seq)) == sorted([alice, bob])
        [added] = await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER)], 1.0
        )
        for reader in (store, other):
            assert sorted(await reader.members_since(cid, added.seq)) == sorted([alice, bob, carol])
        [removed] = await other.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], 1.0
        )
        sent = await store.append_message(new_message(cid, alice))
        for reader in (store, other):
            assert sorted(await reader.members_since(cid, removed.seq)) == sorted([alice, carol])
            assert sorted(await reader.members_since(cid, sent.message.seq)) == sorted(
                [alice, carol]
            )

    async def test_a_removal_through_one_store_binds_at_once_on_another(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """Once a removal through one store returns, another store that has just let the user
        write refuses the user's sends and access checks (no window, on any instance)."""
        other = await store_backend.open()
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        # The other instance has seen bob as a member, at the head it knows.
        for _ in range(3):
            assert await other.member_role(cid, bob) is not None
            await other.append_message(new_message(cid, bob))
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], 1.0
        )
        assert await other.member_role(cid, bob) is None
        with pytest.raises(NotMemberError):
            await other.append_message(new_message(cid, bob))
        with pytest.raises(NotMemberError):
            await other.edit_message(cid, 1, bob, "after removal", time.time())
        # Added back through the first store: the other lets bob write again at once.
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER)], 1.0
        )
        assert await other.member_role(cid, bob) is not None
        sent = await other.append_message(new_message(cid, bob))
        assert sent.message.seq == 6
        assert [e.seq for e in await log_of(store, cid)] == [1, 2, 3, 4, 5, 6]

    async def test_sends_racing_a_removal_stop_at_the_removal(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """Sends through one store racing a removal through another: every acked send is
        before the removal in the log, every send after it is refused, the log has no gap."""
        other = await store_backend.open()
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await other.append_message(new_message(cid, bob))  # warm: bob known as a member

        async def keep_sending() -> list[AppendResult | BaseException]:
            outcomes: list[AppendResult | BaseException] = []
            for _ in range(200):
                batch = await asyncio.gather(
                    *(other.append_message(new_message(cid, bob)) for _ in range(4)),
                    return_exceptions=True,
                )
                outcomes.extend(batch)
                if any(isinstance(o, NotMemberError) for o in batch):
                    break
            return outcomes

        async def remove_soon() -> list[EventRecord]:
            await asyncio.sleep(0.05)
            return await store.change_members(
                cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], time.time()
            )

        outcomes, removal = await asyncio.wait_for(
            asyncio.gather(keep_sending(), remove_soon()), timeout=60
        )
        removed_at = removal[0].seq
        acked = [o.message.seq for o in outcomes if isinstance(o, AppendResult)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert refused and all(isinstance(o, NotMemberError) for o in refused)
        assert all(seq < removed_at for seq in acked)
        with pytest.raises(NotMemberError):
            await other.append_message(new_message(cid, bob))
        log = await log_of(store, cid)
        assert [e.seq for e in log] == list(range(1, removed_at + 1))
        assert sorted(acked) == list(range(2, removed_at))

    async def test_added_member_has_read_everything_before_joining(self, store: ChatStore) -> None:
        """A member added later starts with both markers at the seq of its joining."""
        alice, carol = user("alice"), user("carol")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 3)
        [added] = await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER)], time.time()
        )
        carol_member = await store.get_member(cid, carol)
        assert carol_member is not None
        assert (carol_member.last_read_seq, carol_member.last_delivered_seq) == (4, 4)
        assert added.seq == 4
        assert await store.count_unread(cid, carol, carol_member.last_read_seq) == 0

    async def test_set_muted_is_per_member(self, store: ChatStore) -> None:
        """set_muted changes one member's flag and returns the member."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        muted = await store.set_muted(cid, bob, True)
        assert muted.muted and muted.user_id == bob
        bob_member = await store.get_member(cid, bob)
        alice_member = await store.get_member(cid, alice)
        assert bob_member is not None and bob_member.muted
        assert alice_member is not None and not alice_member.muted
        assert not (await store.set_muted(cid, bob, False)).muted

    async def test_user_conversations_lists_memberships(self, store: ChatStore) -> None:
        """user_conversations returns every current membership of a user and no other."""
        alice, bob = user("alice"), user("bob")
        one = (await group_with(store, alice, [bob])).conversation_id
        two = (await group_with(store, alice)).conversation_id
        assert {m.conversation_id for m in await store.user_conversations(alice)} == {one, two}
        assert {m.conversation_id for m in await store.user_conversations(bob)} == {one}
        await store.change_members(
            one, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], time.time()
        )
        assert await store.user_conversations(bob) == []
        assert await store.user_conversations(user("nobody")) == []

    async def test_list_members_pages_by_user_id(self, store: ChatStore) -> None:
        """list_members pages through members in user id order, starting after the given id."""
        prefix = user("m")
        everyone = [f"{prefix}-{i:02d}" for i in range(11)]
        cid = (await group_with(store, everyone[5], everyone[:5] + everyone[6:])).conversation_id
        seen: list[str] = []
        after = ""
        while True:
            page = await store.list_members(cid, after, 4)
            assert len(page) <= 4
            if not page:
                break
            seen.extend(m.user_id for m in page)
            after = page[-1].user_id
        assert seen == everyone
        first = await store.list_members(cid, "", 4)
        assert [m.user_id for m in first] == everyone[:4]
        owner = [m for m in await store.list_members(cid, "", 100) if m.role == Role.OWNER]
        assert [m.user_id for m in owner] == [everyone[5]]

    # Edits and deletes

    async def test_edit_bumps_version_and_takes_a_seq(self, store: ChatStore) -> None:
        """An edit replaces the body, bumps version, sets edited_at and takes the next seq."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        [original] = await send_many(store, cid, alice, 1)
        at = time.time()
        first = await store.edit_message(cid, 1, alice, "edited once", at)
        second = await store.edit_message(cid, 1, alice, "edited twice", at + 1)
        assert (first.seq, first.kind, first.actor_id) == (2, EventKind.MESSAGE_EDITED, alice)
        assert first.message is not None and second.message is not None
        assert (first.message.seq, first.message.version, first.message.body) == (
            1,
            2,
            "edited once",
        )
        assert first.message.edited_at == pytest.approx(at, abs=1e-3)
        assert (second.seq, second.message.version, second.message.body) == (3, 3, "edited twice")
        stored = await store.get_message(cid, 1)
        assert stored is not None
        assert (stored.body, stored.version, stored.message_id) == (
            "edited twice",
            3,
            original.message_id,
        )
        fetched = await store.get_conversation(cid)
        assert fetched is not None and fetched.last_seq == 3
        assert [m.seq for m in await store.history(cid, 0, 0, 10)] == [1]

    async def test_delete_leaves_a_tombstone(self, store: ChatStore) -> None:
        """A delete keeps the seq, drops body and attachments, and takes the next seq."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        appended = await store.append_message(
            new_message(cid, alice, "secret", attachments=("media-1",))
        )
        event = await store.delete_message(cid, 1, alice, time.time())
        assert (event.seq, event.kind, event.actor_id) == (2, EventKind.MESSAGE_DELETED, alice)
        assert event.message is not None
        for tombstone in (event.message, await store.get_message(cid, 1)):
            assert tombstone is not None
            assert tombstone.deleted
            assert (tombstone.seq, tombstone.body, tombstone.attachments) == (1, "", ())
            assert tombstone.message_id == appended.message.message_id
        [in_history] = await store.history(cid, 0, 0, 10)
        assert in_history.deleted and in_history.body == "" and in_history.attachments == ()

    async def test_replay_after_delete_carries_no_body(self, store: ChatStore) -> None:
        """After a delete, events_after replays the creation and earlier edits as tombstones."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await store.append_message(new_message(cid, alice, "secret", attachments=("media-1",)))
        await store.edit_message(cid, 1, alice, "secret edited", time.time())
        await store.edit_message(cid, 1, alice, "secret edited again", time.time())
        await store.delete_message(cid, 1, alice, time.time())
        log = await log_of(store, cid)
        assert [e.kind for e in log] == [
            EventKind.MESSAGE_CREATED,
            EventKind.MESSAGE_EDITED,
            EventKind.MESSAGE_EDITED,
            EventKind.MESSAGE_DELETED,
        ]
        for event in log:
            assert event.message is not None
            assert event.message.seq == 1
            assert event.message.deleted
            assert event.message.body == ""
            assert event.message.attachments == ()

    async def test_edit_of_deleted_message_conflicts(self, store: ChatStore) -> None:
        """Editing a deleted message raises ConflictError and writes nothing."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 1)
        await store.delete_message(cid, 1, alice, time.time())
        with pytest.raises(ConflictError):
            await store.edit_message(cid, 1, alice, "back from the dead", time.time())
        stored = await store.get_message(cid, 1)
        assert stored is not None and stored.deleted and stored.body == ""
        assert len(await log_of(store, cid)) == 2

    async def test_second_delete_takes_no_seq(self, store: ChatStore) -> None:
        """Deleting a deleted message writes no new event (it may raise ConflictError)."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 1)
        await store.delete_message(cid, 1, alice, time.time())
        with contextlib.suppress(ConflictError):
            await store.delete_message(cid, 1, alice, time.time())
        assert [e.seq for e in await log_of(store, cid)] == [1, 2]
        fetched = await store.get_conversation(cid)
        assert fetched is not None and fetched.last_seq == 2

    async def test_edit_of_unknown_message_is_refused(self, store: ChatStore) -> None:
        """Editing or deleting a seq that holds no message raises a StoreError, writes nothing."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice)).conversation_id
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER)], time.time()
        )
        for seq in (1, 2):  # 1 is a membership event, 2 is past the end
            with pytest.raises(StoreError):
                await store.edit_message(cid, seq, alice, "x", time.time())
            with pytest.raises(StoreError):
                await store.delete_message(cid, seq, alice, time.time())
        assert [e.seq for e in await log_of(store, cid)] == [1]

    # History and the log

    async def test_history_pages_newest_first(self, store: ChatStore) -> None:
        """Backward (the default), history pages go newest first, below before_seq."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 10)
        assert [m.seq for m in await store.history(cid, 0, 0, 3)] == [10, 9, 8]
        assert [m.seq for m in await store.history(cid, 8, 0, 3)] == [7, 6, 5]
        assert [m.seq for m in await store.history(cid, 3, 0, 3)] == [2, 1]
        assert await store.history(cid, 1, 0, 3) == []

    async def test_history_backward_above_after_seq_takes_the_newest(
        self, store: ChatStore
    ) -> None:
        """Backward with after_seq alone: the newest messages above it, newest first."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 10)
        assert [m.seq for m in await store.history(cid, 0, 3, 3, BACKWARD)] == [10, 9, 8]
        assert [m.seq for m in await store.history(cid, 0, 8, 5, BACKWARD)] == [10, 9]

    async def test_history_forward_goes_oldest_first(self, store: ChatStore) -> None:
        """Forward, history goes oldest first, above after_seq."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 10)
        assert [m.seq for m in await store.history(cid, 0, 3, 3, FORWARD)] == [4, 5, 6]
        assert [m.seq for m in await store.history(cid, 0, 8, 5, FORWARD)] == [9, 10]
        assert await store.history(cid, 0, 10, 5, FORWARD) == []

    async def test_history_forward_from_zero_starts_at_the_first_message(
        self, store: ChatStore
    ) -> None:
        """Forward from after_seq 0 reads from the start of the log, not the newest page."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 10)
        assert [m.seq for m in await store.history(cid, 0, 0, 3, FORWARD)] == [1, 2, 3]
        assert [m.seq for m in await store.history(cid, 3, 0, 5, FORWARD)] == [1, 2]

    async def test_history_between_bounds_excludes_both(self, store: ChatStore) -> None:
        """With both bounds, history holds after_seq < seq < before_seq, from either end."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 10)
        assert [m.seq for m in await store.history(cid, 8, 3, 10)] == [7, 6, 5, 4]
        assert [m.seq for m in await store.history(cid, 8, 3, 2)] == [7, 6]
        assert [m.seq for m in await store.history(cid, 8, 3, 2, FORWARD)] == [4, 5]

    async def test_history_holds_messages_only(self, store: ChatStore) -> None:
        """Membership, edit and delete events take seqs but are not messages in history."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice)).conversation_id
        await send_many(store, cid, alice, 2)
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER)], time.time()
        )
        await store.edit_message(cid, 1, alice, "edited", time.time())
        await store.append_message(new_message(cid, bob, "from bob"))
        assert [m.seq for m in await store.history(cid, 0, 0, 10)] == [5, 2, 1]
        assert [m.seq for m in await store.history(cid, 0, 2, 10, FORWARD)] == [5]

    async def test_events_after_returns_the_log_in_order(self, store: ChatStore) -> None:
        """events_after returns the events after a seq, oldest first, at most limit of them."""
        alice = user("alice")
        cid = (await group_with(store, alice)).conversation_id
        messages = await send_many(store, cid, alice, 6)
        await store.edit_message(cid, 2, alice, "edited", time.time())
        page = await store.events_after(cid, 2, 3)
        assert [(e.seq, e.kind) for e in page] == [
            (s, EventKind.MESSAGE_CREATED) for s in (3, 4, 5)
        ]
        assert [e.message.message_id for e in page if e.message] == [
            m.message_id for m in messages[2:5]
        ]
        tail = await store.events_after(cid, 5, 100)
        assert [(e.seq, e.kind) for e in tail] == [
            (6, EventKind.MESSAGE_CREATED),
            (7, EventKind.MESSAGE_EDITED),
        ]
        assert tail[1].message is not None and tail[1].message.seq == 2
        assert await store.events_after(cid, 7, 100) == []
        assert await store.events_after(new_id(), 0, 100) == []

    # Receipts and unread

    async def test_mark_read_only_moves_forward(self, store: ChatStore) -> None:
        """mark_read never moves last_read_seq back, and pulls last_delivered_seq along."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await send_many(store, cid, bob, 5)
        moved = await store.mark_read(cid, alice, 3)
        assert (moved.last_read_seq, moved.last_delivered_seq) == (3, 3)
        kept = await store.mark_read(cid, alice, 2)
        assert (kept.last_read_seq, kept.last_delivered_seq) == (3, 3)
        stored = await store.get_member(cid, alice)
        assert stored is not None and stored.last_read_seq == 3

    async def test_mark_delivered_only_moves_forward(self, store: ChatStore) -> None:
        """mark_delivered never moves back and leaves last_read_seq alone."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await send_many(store, cid, bob, 5)
        moved = await store.mark_delivered(cid, alice, 4)
        assert (moved.last_read_seq, moved.last_delivered_seq) == (0, 4)
        kept = await store.mark_delivered(cid, alice, 1)
        assert (kept.last_read_seq, kept.last_delivered_seq) == (0, 4)
        read = await store.mark_read(cid, alice, 2)
        assert (read.last_read_seq, read.last_delivered_seq) == (2, 4)

    async def test_count_unread_excludes_own_and_deleted(self, store: ChatStore) -> None:
        """count_unread counts others' messages after the seq that are not deleted."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await send_many(store, cid, alice, 2)  # 1, 2
        await send_many(store, cid, bob, 3)  # 3, 4, 5
        await store.delete_message(cid, 4, bob, time.time())  # event 6
        await store.edit_message(cid, 5, bob, "edited", time.time())  # event 7
        await store.change_members(
            cid, alice, [MembershipChange(user("carol"), EventKind.MEMBER_ADDED)], time.time()
        )  # event 8
        assert await store.count_unread(cid, alice, 0) == 2
        assert await store.count_unread(cid, alice, 3) == 1
        assert await store.count_unread(cid, alice, 5) == 0
        assert await store.count_unread(cid, bob, 0) == 2

    # Blocks

    async def test_blocks_are_directional(self, store: ChatStore) -> None:
        """set_block blocks one way; is_blocked and list_blocked reflect it; unblock undoes it."""
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        await store.set_block(alice, bob, True)
        await store.set_block(alice, bob, True)
        await store.set_block(alice, carol, True)
        assert await store.is_blocked(alice, bob)
        assert not await store.is_blocked(bob, alice)
        assert sorted(await store.list_blocked(alice)) == sorted([bob, carol])
        assert await store.list_blocked(bob) == []
        await store.set_block(alice, bob, False)
        await store.set_block(alice, bob, False)
        assert not await store.is_blocked(alice, bob)
        assert await store.list_blocked(alice) == [carol]

    # Durability

    async def test_reopened_store_has_everything(
        self, store: ChatStore, store_backend: StoreBackend
    ) -> None:
        """A new store instance on the same storage returns every acknowledged write."""
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        group = await group_with(store, alice, [bob])
        cid = group.conversation_id
        direct_key = f"{alice}|{carol}"
        direct, _ = await store.create_conversation(
            new_conversation(alice, [carol], kind=Kind.DIRECT, direct_key=direct_key)
        )
        results = await asyncio.gather(
            *(
                store.append_message(
                    new_message(cid, (alice, bob)[i % 2], f"m{i}", attachments=(f"media-{i}",))
                )
                for i in range(30)
            )
        )
        by_seq = {r.message.seq: r.message for r in results}
        await store.edit_message(cid, 3, by_seq[3].sender_id, "edited", time.time())
        await store.delete_message(cid, 4, alice, time.time())
        await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.ADMIN)], time.time()
        )
        await store.mark_read(cid, bob, 10)
        await store.mark_delivered(cid, bob, 20)
        await store.set_muted(cid, bob, True)
        await store.update_conversation(cid, "renamed", True, time.time())
        await store.set_block(bob, carol, True)

        conversation = await store.get_conversation(cid)
        members = await store.list_members(cid, "", 100)
        history = await store.history(cid, 0, 0, 100)
        log = await log_of(store, cid)
        await store_backend.close_all()
        reopened = await store_backend.open()

        reopened_conversation = await reopened.get_conversation(cid)
        assert reopened_conversation is not None and reopened_conversation.last_seq == 33
        assert_same(reopened_conversation, conversation)
        reopened_members = await reopened.list_members(cid, "", 100)
        assert len(reopened_members) == len(members) == 3
        for got_member, want_member in zip(reopened_members, members, strict=True):
            assert_same(got_member, want_member)
        reopened_history = await reopened.history(cid, 0, 0, 100)
        assert [m.seq for m in reopened_history] == list(range(30, 0, -1))
        for got_message, want_message in zip(reopened_history, history, strict=True):
            assert_same(got_message, want_message)
        reopened_log = await log_of(reopened, cid)
        assert [e.seq for e in reopened_log] == list(range(1, 34))
        for got_event, want_event in zip(reopened_log, log, strict=True):
            assert_same(got_event, want_event)
        assert await reopened.is_blocked(bob, carol)
        again, created = await reopened.create_conversation(
            new_conversation(carol, [alice], kind=Kind.DIRECT, direct_key=direct_key)
        )
        assert (again.conversation_id, created) == (direct.conversation_id, False)
        original = results[7].message
        retry = await reopened.append_message(
            dataclasses.replace(
                new_message(cid, original.sender_id, "retry"),
                client_msg_id=original.client_msg_id,
            )
        )
        assert retry.duplicate
        assert (retry.message.seq, retry.message.message_id) == (original.seq, original.message_id)

    # Retention

    async def test_purge_expired_drops_the_old_start_of_the_log(
        self, store: ChatStore, store_backend: StoreBackend
    ) -> None:
        """Messages and events before `before` go; first_seq moves; seqs stay as they were."""
        # Fixed times far in the past: only this test's conversations are that old. The test
        # ends by purging everything it made, so a shared keyspace holds no leftovers.
        t0 = 1_000_000.0
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        group, _ = await store.create_conversation(
            dataclasses.replace(new_conversation(alice, [bob]), created_at=t0)
        )
        direct, _ = await store.create_conversation(
            dataclasses.replace(new_conversation(alice, [bob], kind=Kind.DIRECT), created_at=t0)
        )
        cid = group.conversation_id

        async def send(conversation_id: str, sender: str, at: float) -> MessageRecord:
            new = dataclasses.replace(new_message(conversation_id, sender), created_at=at)
            return (await store.append_message(new)).message

        for i in range(5):  # seqs 1..5
            await send(cid, alice if i % 2 == 0 else bob, t0 + 1 + i)
        await store.change_members(  # seq 6
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER)], t0 + 6
        )
        for sender, at in ((alice, t0 + 10), (alice, t0 + 11), (bob, t0 + 12)):  # seqs 7..9
            await send(cid, sender, at)
        await store.edit_message(cid, 2, bob, "edited late", t0 + 13)  # seq 10, of a purged one
        await send(direct.conversation_id, alice, t0 + 1)

        assert await store.purge_expired(Kind.GROUP, t0 + 7, 100) == 5
        conversation = await store.get_conversation(cid)
        assert conversation is not None
        assert (conversation.first_seq, conversation.last_seq) == (7, 10)
        assert [m.seq for m in await store.history(cid, 0, 0, 100)] == [9, 8, 7]
        assert [m.seq for m in await store.history(cid, 0, 2, 100, FORWARD)] == [7, 8, 9]
        assert [m.seq for m in await store.history(cid, 0, 0, 2, FORWARD)] == [7, 8]
        assert await store.get_message(cid, 2) is None
        assert (await store.get_message(cid, 7)) is not None
        log = await log_of(store, cid)
        assert [e.seq for e in log] == [7, 8, 9, 10]
        assert log[-1].kind == EventKind.MESSAGE_EDITED and log[-1].message is None
        # A cursor below the horizon replays from the horizon.
        assert [e.seq for e in await store.events_after(cid, 3, 100)] == [7, 8, 9, 10]
        assert await store.count_unread(cid, bob, 0) == 2
        assert await store.count_unread(cid, carol, 0) == 3
        # Idempotent, and other kinds are untouched.
        assert await store.purge_expired(Kind.GROUP, t0 + 7, 100) == 0
        assert [m.seq for m in await store.history(direct.conversation_id, 0, 0, 10)] == [1]
        # Numbering goes on from last_seq; the horizon survives a reopen.
        assert (await send(cid, bob, t0 + 20)).seq == 11
        reopened = await store_backend.open()
        again = await reopened.get_conversation(cid)
        assert again is not None and (again.first_seq, again.last_seq) == (7, 11)
        assert [m.seq for m in await reopened.history(cid, 0, 0, 100)] == [11, 9, 8, 7]

        assert await store.purge_expired(Kind.DIRECT, t0 + 1000, 100) == 1
        assert await store.purge_expired(Kind.GROUP, t0 + 1000, 100) == 4
        emptied = await store.get_conversation(cid)
        assert emptied is not None and (emptied.first_seq, emptied.last_seq) == (12, 11)
        assert await store.history(cid, 0, 0, 100) == []
        assert await log_of(store, cid) == []
        assert await store.count_unread(cid, carol, 0) == 0

    async def test_purge_expired_works_in_bounded_batches(self, store: ChatStore) -> None:
        """A batch stops at `limit` messages; the next one goes on from there, oldest first."""
        t0 = 2_000_000.0
        alice = user("alice")
        group, _ = await store.create_conversation(
            dataclasses.replace(new_conversation(alice), created_at=t0)
        )
        cid = group.conversation_id
        for i in range(7):
            new = dataclasses.replace(new_message(cid, alice), created_at=t0 + 1 + i)
            await store.append_message(new)
        horizons = []
        counts = []
        while True:
            counts.append(await store.purge_expired(Kind.GROUP, t0 + 100, 3))
            conversation = await store.get_conversation(cid)
            assert conversation is not None
            horizons.append(conversation.first_seq)
            oldest = await store.history(cid, 0, 0, 100)
            assert [m.seq for m in oldest] == list(range(7, conversation.first_seq - 1, -1))
            if counts[-1] < 3:
                break
        assert counts == [3, 3, 1]
        assert horizons == [4, 7, 8]
        result = await store.append_message(new_message(cid, alice))
        assert result.message.seq == 8
        assert [e.seq for e in await log_of(store, cid)] == [8]
        assert await store.purge_expired(Kind.GROUP, t0 + 100, 3) == 0

    # Metrics

    async def test_every_operation_is_named_and_timed(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """Each operation of the Protocol, reads included, is timed under its own name."""
        label = store_backend.metrics_label
        before = {op: timed_count(label, op) for op in OPERATIONS}
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice)).conversation_id
        now = time.time()
        await store.get_conversation(cid)
        await store.update_conversation(cid, "renamed", None, now)
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER)], now
        )
        await store.get_member(cid, bob)
        await store.member_role(cid, bob)
        await store.list_members(cid, "", 10)
        await store.member_ids(cid)
        await store.members_since(cid, 1)
        await store.user_conversations(bob)
        await store.set_muted(cid, bob, True)
        sent = (await store.append_message(new_message(cid, alice))).message
        await store.edit_message(cid, sent.seq, alice, "edited", now)
        await store.get_message(cid, sent.seq)
        await store.get_message_by_id(cid, sent.message_id)
        await store.history(cid, 0, 0, 10, FORWARD)
        await store.events_after(cid, 0, 10)
        await store.delete_message(cid, sent.seq, alice, now)
        await store.pending_outbox(10)
        entry = await store.outbox_entry(cid)
        assert entry is not None
        await store.clear_outbox([(cid, entry.up_to_seq)])
        await store.purge_expired(Kind.CHANNEL, 0.0, 1)
        await store.mark_read(cid, bob, sent.seq)
        await store.mark_delivered(cid, bob, sent.seq)
        await store.count_unread(cid, bob, 0)
        await store.set_block(alice, bob, True)
        await store.is_blocked(alice, bob)
        await store.list_blocked(alice)
        await exercise_moderation(store, cid, bob)
        untimed = [op for op in OPERATIONS if timed_count(label, op) <= before[op]]
        assert untimed == []

    async def test_a_refused_operation_counts_as_an_error_of_its_name(
        self, store_backend: StoreBackend, store: ChatStore
    ) -> None:
        """A store operation that raises is counted by name and exception class."""
        label = store_backend.metrics_label
        alice, mallory = user("alice"), user("mallory")
        cid = (await group_with(store, alice)).conversation_id
        before = error_count(label, "append_message", "NotMemberError")
        timed_before = timed_count(label, "append_message")
        with pytest.raises(NotMemberError):
            await store.append_message(new_message(cid, mallory))
        assert error_count(label, "append_message", "NotMemberError") == before + 1
        assert timed_count(label, "append_message") == timed_before + 1
