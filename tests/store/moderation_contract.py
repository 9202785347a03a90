"""The moderation part of the ChatStore contract: reports, bans and suspensions.

Run against every backend of the `store_backend` fixture (tests/store/test_store_contract.py).
A CQL keyspace is shared by the session's tests, so listings are read whole and filtered to the
test's own reporters.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from chat_service.store.base import (
    BanRecord,
    ChatStore,
    EventKind,
    HeldState,
    MembershipChange,
    NewReport,
    NotFoundError,
    NotMemberError,
    ReportRecord,
    ReportStatus,
    Role,
    SuspendedError,
    SuspensionRecord,
)
from chatmesh_common.ids import new_id

from .contract import (
    StoreBackend,
    group_with,
    log_of,
    new_conversation,
    new_message,
    send_many,
    user,
)

SPAM, HARASSMENT = 1, 2


def message_report(reporter: str, conversation_id: str, seq: int, reason: int = SPAM) -> NewReport:
    return NewReport(
        report_id=new_id(),
        reporter_id=reporter,
        reason=reason,
        details="looks like spam",
        conversation_id=conversation_id,
        message_seq=seq,
        message_id=new_id(),
        user_id=user("sender"),
        created_at=1000.0,
    )


def user_report(reporter: str, target: str, conversation_id: str = "") -> NewReport:
    return NewReport(
        report_id=new_id(),
        reporter_id=reporter,
        reason=HARASSMENT,
        details="",
        conversation_id=conversation_id,
        message_seq=0,
        message_id="",
        user_id=target,
        created_at=1000.0,
    )


async def all_reports(store: ChatStore, status: ReportStatus | None, page: int = 2) -> list[str]:
    """Every report id listed for `status`, read page by page."""
    ids: list[str] = []
    after = ""
    while True:
        rows = await store.list_reports(status, after, page)
        ids.extend(r.report_id for r in rows)
        if len(rows) < page:
            return ids
        after = rows[-1].report_id


class ModerationContract:
    """Every ChatStore implementation stores moderation state like this."""

    async def test_report_is_stored_open(self, store: ChatStore) -> None:
        """A new report comes back from get_report, open, as it was given."""
        new = message_report(user("carol"), new_id(), 3)
        record, created = await store.add_report(new)
        assert created
        assert record.status == ReportStatus.OPEN
        assert (record.report_id, record.reporter_id, record.message_seq) == (
            new.report_id,
            new.reporter_id,
            3,
        )
        assert (record.reason, record.details, record.user_id) == (SPAM, new.details, new.user_id)
        assert (record.resolved_by, record.resolved_at, record.resolution) == ("", None, "")
        assert await store.get_report(new.report_id) == record

    async def test_same_reporter_same_target_stores_one_report(self, store: ChatStore) -> None:
        """Reporting one message twice returns the first report, created False."""
        carol, cid = user("carol"), new_id()
        first, _ = await store.add_report(message_report(carol, cid, 5))
        again = message_report(carol, cid, 5, reason=HARASSMENT)
        second, created = await store.add_report(again)
        assert not created
        assert second == first
        assert await store.get_report(again.report_id) is None
        ids = await all_reports(store, None)
        assert first.report_id in ids and again.report_id not in ids

    async def test_concurrent_duplicate_reports_store_one(self, store: ChatStore) -> None:
        """Racing reports of one target by one reporter: exactly one is created."""
        carol, target = user("carol"), user("dave")
        results = await asyncio.gather(
            *(store.add_report(user_report(carol, target)) for _ in range(5))
        )
        assert sum(created for _, created in results) == 1
        assert len({r.report_id for r, _ in results}) == 1

    async def test_other_reporters_and_targets_are_other_reports(self, store: ChatStore) -> None:
        """Another reporter, another message, or a user report in another conversation is new."""
        carol, erin, cid, target = user("carol"), user("erin"), new_id(), user("dave")
        made = [
            await store.add_report(message_report(carol, cid, 1)),
            await store.add_report(message_report(erin, cid, 1)),
            await store.add_report(message_report(carol, cid, 2)),
            await store.add_report(user_report(carol, target)),
            await store.add_report(user_report(carol, target, cid)),
        ]
        assert all(created for _, created in made)
        assert len({r.report_id for r, _ in made}) == 5

    async def test_list_reports_pages_by_status(self, store: ChatStore) -> None:
        """Open and resolved reports are listed apart, oldest first; None lists both."""
        carol = user("carol")
        made: list[ReportRecord] = []
        for seq in range(1, 6):
            record, _ = await store.add_report(message_report(carol, new_id(), seq))
            made.append(record)
        # Report ids sort by time to the millisecond; within one, by their random part.
        made.sort(key=lambda r: r.report_id)
        resolved = await store.resolve_report(made[1].report_id, "ops", "removed", 2000.0)
        assert resolved.status == ReportStatus.RESOLVED
        mine = {r.report_id for r in made}
        open_ids = [i for i in await all_reports(store, ReportStatus.OPEN) if i in mine]
        resolved_ids = [i for i in await all_reports(store, ReportStatus.RESOLVED) if i in mine]
        every = [i for i in await all_reports(store, None) if i in mine]
        assert open_ids == [r.report_id for r in made if r.report_id != made[1].report_id]
        assert resolved_ids == [made[1].report_id]
        assert every == [r.report_id for r in made]

    async def test_resolve_keeps_the_first_resolution(self, store: ChatStore) -> None:
        """Resolving twice returns the report as first resolved."""
        record, _ = await store.add_report(user_report(user("carol"), user("dave")))
        first = await store.resolve_report(record.report_id, "ops", "warned", 2000.0)
        assert (first.resolved_by, first.resolved_at, first.resolution) == ("ops", 2000.0, "warned")
        second = await store.resolve_report(record.report_id, "other", "banned", 3000.0)
        assert second == first
        assert await store.get_report(record.report_id) == first

    async def test_resolve_unknown_report_is_not_found(self, store: ChatStore) -> None:
        """resolve_report of an id never stored raises NotFoundError and stores nothing."""
        missing = new_id()
        try:
            await store.resolve_report(missing, "ops", "", 1.0)
        except NotFoundError:
            pass
        else:
            raise AssertionError("resolve_report of a missing report did not raise")
        assert await store.get_report(missing) is None

    async def test_ban_until_removed(self, store: ChatStore) -> None:
        """A ban is read back for its conversation and user only, until removed."""
        cid, dave = new_id(), user("dave")
        assert await store.get_ban(cid, dave) is None
        ban = BanRecord(cid, dave, "ops", 1000.0, "spam")
        await store.set_ban(ban)
        assert await store.get_ban(cid, dave) == ban
        assert await store.get_ban(new_id(), dave) is None
        assert await store.get_ban(cid, user("erin")) is None
        await store.remove_ban(cid, dave)
        assert await store.get_ban(cid, dave) is None
        await store.remove_ban(cid, dave)  # removing twice is no error

    async def test_suspension_until_removed(self, store: ChatStore) -> None:
        """A suspension is read back for its user until removed; setting again replaces it."""
        dave = user("dave")
        assert await store.get_suspension(dave) is None
        await store.set_suspension(SuspensionRecord(dave, "ops", 1000.0, "spam"))
        later = SuspensionRecord(dave, "lead", 2000.0, "abuse")
        await store.set_suspension(later)
        assert await store.get_suspension(dave) == later
        assert await store.get_suspension(user("erin")) is None
        await store.remove_suspension(dave)
        assert await store.get_suspension(dave) is None

    async def test_moderated_delete_needs_no_membership(self, store: ChatStore) -> None:
        """A moderator's delete (moderated) tombstones a message of a conversation the actor is
        not in, as a logged delete event; without the flag a non-member is refused."""
        alice = user("alice")
        conversation = await group_with(store, alice, [user("bob")])
        cid = conversation.conversation_id
        [message] = await send_many(store, cid, alice, 1)
        with pytest.raises(NotMemberError):
            await store.delete_message(cid, message.seq, "ops", time.time())
        record = await store.delete_message(cid, message.seq, "ops", time.time(), moderated=True)
        assert (record.kind, record.actor_id, record.seq) == (EventKind.MESSAGE_DELETED, "ops", 2)
        assert record.message is not None and record.message.deleted
        stored = await store.get_message(cid, message.seq)
        assert stored is not None and stored.deleted and stored.body == ""
        assert [e.kind for e in await log_of(store, cid)] == [
            EventKind.MESSAGE_CREATED,
            EventKind.MESSAGE_DELETED,
        ]

    # Suspensions bind at the write (not only at the domain's earlier check)

    async def test_suspension_refuses_every_write_of_the_user_at_the_write(
        self, store: ChatStore
    ) -> None:
        """After set_suspension the user's sends, edits, deletes and membership changes are
        SuspendedError in the store itself; a retried key is still its duplicate, leaving and
        a moderator's delete still work, others write on."""
        alice, bob, carol = user("alice"), user("bob"), user("carol")
        cid = (await group_with(store, alice, [bob])).conversation_id
        sent = await store.append_message(new_message(cid, bob, "before"))
        await store.set_suspension(SuspensionRecord(bob, "ops", 1000.0, "spam wave"))
        now = time.time()
        refused = [
            store.append_message(new_message(cid, bob, "after")),
            store.edit_message(cid, 1, bob, "edited", now),
            store.delete_message(cid, 1, bob, now),
            store.change_members(cid, bob, [MembershipChange(carol, EventKind.MEMBER_ADDED)], now),
        ]
        for write in refused:
            with pytest.raises(SuspendedError, match=r"suspended.*spam wave"):
                await write
        with pytest.raises(SuspendedError):
            await store.create_conversation(new_conversation(bob, [alice]))
        retry = await store.append_message(
            new_message(cid, bob, "after", client_msg_id=sent.message.client_msg_id)
        )
        assert retry.duplicate and retry.message.seq == 1
        await store.append_message(new_message(cid, alice, "alice writes on"))
        await store.delete_message(cid, 1, "ops", now, moderated=True)
        await store.change_members(cid, bob, [MembershipChange(bob, EventKind.MEMBER_LEFT)], now)
        assert [e.kind for e in await log_of(store, cid)] == [
            EventKind.MESSAGE_CREATED,
            EventKind.MESSAGE_CREATED,
            EventKind.MESSAGE_DELETED,
            EventKind.MEMBER_LEFT,
        ]

    async def test_suspension_binds_another_store_instance(
        self, store_backend: StoreBackend
    ) -> None:
        """A suspension set through one instance refuses the next write through another (a
        replica whose caches already know the sender as a member)."""
        first, second = await store_backend.open(), await store_backend.open()
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(first, alice, [bob])).conversation_id
        await send_many(first, cid, bob, 2)
        await second.set_suspension(SuspensionRecord(bob, "ops", 1000.0, ""))
        with pytest.raises(SuspendedError):
            await first.append_message(new_message(cid, bob, "late"))
        assert (await first.get_conversation(cid)).last_seq == 2  # type: ignore[union-attr]

    async def test_user_added_while_suspended_cannot_write_until_unsuspended(
        self, store: ChatStore
    ) -> None:
        """A suspended user added to a conversation after the suspension is refused there
        too; after remove_suspension they write again."""
        alice, carol = user("alice"), user("carol")
        cid = (await group_with(store, alice, [user("bob")])).conversation_id
        await store.set_suspension(SuspensionRecord(carol, "ops", 1000.0, ""))
        await store.change_members(
            cid, alice, [MembershipChange(carol, EventKind.MEMBER_ADDED, Role.MEMBER)], time.time()
        )
        with pytest.raises(SuspendedError):
            await store.append_message(new_message(cid, carol, "hi"))
        await store.remove_suspension(carol)
        result = await store.append_message(new_message(cid, carol, "hi"))
        assert not result.duplicate

    async def test_a_conversation_left_while_suspended_is_writable_after(
        self, store: ChatStore
    ) -> None:
        """Leaving while suspended, being unsuspended and added again: the user writes there
        (nothing of the suspension is left behind in that conversation)."""
        alice, bob = user("alice"), user("bob")
        cid = (await group_with(store, alice, [bob])).conversation_id
        await store.set_suspension(SuspensionRecord(bob, "ops", 1000.0, ""))
        now = time.time()
        await store.change_members(cid, bob, [MembershipChange(bob, EventKind.MEMBER_LEFT)], now)
        await store.remove_suspension(bob)
        await store.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_ADDED, Role.MEMBER)], now
        )
        result = await store.append_message(new_message(cid, bob, "back"))
        assert result.message.seq == 3

    # Finding a message by its server id (reports that name only the message_id)

    async def test_get_message_by_id_finds_the_message_as_it_stands(self, store: ChatStore) -> None:
        """By conversation and message_id: the message (edited, then its tombstone); None for
        an unknown id and for an id of another conversation."""
        alice = user("alice")
        cid = (await group_with(store, alice, [user("bob")])).conversation_id
        other = (await group_with(store, alice, [user("carol")])).conversation_id
        first, second = await send_many(store, cid, alice, 2)
        [elsewhere] = await send_many(store, other, alice, 1)
        found = await store.get_message_by_id(cid, second.message_id)
        assert found == second
        await store.edit_message(cid, first.seq, alice, "edited", time.time())
        edited = await store.get_message_by_id(cid, first.message_id)
        assert edited is not None and (edited.seq, edited.body, edited.version) == (1, "edited", 2)
        await store.delete_message(cid, first.seq, alice, time.time())
        gone = await store.get_message_by_id(cid, first.message_id)
        assert gone is not None and gone.deleted and gone.body == ""
        assert await store.get_message_by_id(cid, new_id()) is None
        assert await store.get_message_by_id(cid, elsewhere.message_id) is None
        assert await store.get_message_by_id(new_id(), second.message_id) is None

    async def test_get_message_by_id_through_another_instance(
        self, store_backend: StoreBackend
    ) -> None:
        """A message appended through one store instance is found by id through another."""
        first, second = await store_backend.open(), await store_backend.open()
        alice = user("alice")
        cid = (await group_with(first, alice, [user("bob")])).conversation_id
        [message] = await send_many(first, cid, alice, 1)
        assert await second.get_message_by_id(cid, message.message_id) == message

    # Messages held for review

    async def test_held_message_is_stored_once_per_send_until_decided(
        self, store: ChatStore
    ) -> None:
        """hold_message keeps the message aside (no seq taken); the same send again returns
        the first hold; concurrent duplicates store one; the log is untouched."""
        alice = user("alice")
        cid = (await group_with(store, alice, [user("bob")])).conversation_id
        new = new_message(cid, alice, "please review")
        record, created = await store.hold_message(new, "held word", 1000.0)
        assert created and record.state == HeldState.PENDING
        assert (record.message, record.reason, record.held_at) == (new, "held word", 1000.0)
        retry = new_message(cid, alice, "please review", client_msg_id=new.client_msg_id)
        again, created_again = await store.hold_message(retry, "held word", 2000.0)
        assert not created_again and again == record
        racing = new_message(cid, alice, "racing")
        outcomes = await asyncio.gather(
            *(
                store.hold_message(
                    new_message(cid, alice, "racing", client_msg_id=racing.client_msg_id),
                    "held word",
                    1000.0,
                )
                for _ in range(4)
            )
        )
        assert sum(1 for _, fresh in outcomes if fresh) == 1
        assert len({r.message.message_id for r, _ in outcomes}) == 1
        assert await store.get_held(new.message_id) == record
        assert (await store.get_conversation(cid)).last_seq == 0  # type: ignore[union-attr]

    async def test_list_held_pages_pending_ones_and_the_first_decision_stays(
        self, store: ChatStore
    ) -> None:
        """Pending held messages list oldest id first, paged; a decided one leaves the list;
        deciding again returns the first decision; an unknown id is NotFoundError."""
        alice = user("alice")
        cid = (await group_with(store, alice, [user("bob")])).conversation_id
        ids = []
        for i in range(3):
            new = new_message(cid, alice, f"m{i}")
            await store.hold_message(new, "held word", 1000.0)
            ids.append(new.message_id)
        mine = set(ids)

        async def pending() -> list[str]:
            out: list[str] = []
            after = ""
            while True:
                page = await store.list_held(after, 2)
                out.extend(r.message.message_id for r in page if r.message.message_id in mine)
                if len(page) < 2:
                    return out
                after = page[-1].message.message_id

        assert await pending() == sorted(ids)
        released = await store.decide_held(ids[0], HeldState.RELEASED, "ops")
        assert (released.state, released.decided_by) == (HeldState.RELEASED, "ops")
        again = await store.decide_held(ids[0], HeldState.DROPPED, "lead")
        assert (again.state, again.decided_by) == (HeldState.RELEASED, "ops")
        await store.decide_held(ids[1], HeldState.DROPPED, "ops")
        assert await pending() == [ids[2]]
        with pytest.raises(NotFoundError):
            await store.decide_held(new_id(), HeldState.DROPPED, "ops")
        assert await store.get_held(new_id()) is None
