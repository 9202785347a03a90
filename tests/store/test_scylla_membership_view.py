"""The cluster store's membership view: what an access check and a send cost in CQL requests,
and that a membership change through one instance binds at once on another whose view is warm.

Requests are counted at the session (`CqlSession.execute`: every statement and batch is one
request), so the figures are exact, not timings.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest

from chat_service.store.base import EventKind, MembershipChange, NotMemberError, Role
from chat_service.store.scylla import ScyllaChatStore
from tests.servers.cassandra import CassandraServer

from .conftest import CqlBackend
from .contract import group_with, new_message, user

pytestmark = [pytest.mark.cql, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def keyspace() -> str:
    return f"chat_view_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def stores(
    cassandra_server: CassandraServer, keyspace: str
) -> AsyncIterator[list[ScyllaChatStore]]:
    """Two store instances with their own driver pools: two replicas of chat_service."""
    backend = CqlBackend(cassandra_server, keyspace)
    try:
        yield [cast(ScyllaChatStore, await backend.open()) for _ in range(2)]
    finally:
        await backend.close_all()


class RequestCount:
    """Counts the CQL requests a store instance sends."""

    def __init__(self) -> None:
        self.requests = 0


@contextlib.contextmanager
def counted(store: ScyllaChatStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestCount]:
    count = RequestCount()
    session = store._session
    execute = session.execute

    async def counting(statement: Any) -> list[Any]:
        count.requests += 1
        return await execute(statement)

    with monkeypatch.context() as patch:
        patch.setattr(session, "execute", counting)
        yield count


async def send(store: ScyllaChatStore, cid: str, sender: str) -> int:
    """A send as the chat layer makes it: the access check, then the append; its seq."""
    assert await store.member_role(cid, sender) is not None
    return (await store.append_message(new_message(cid, sender))).message.seq


async def test_a_send_by_a_known_member_costs_a_head_read_and_four_writes(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access check (suspension included) and append of a member known as of the head: 5
    requests (head; outbox index, LWT, side effects, event row), where get_member (2),
    get_conversation, get_suspension and the append were 8."""
    a, _ = stores
    alice = user("alice")
    cid = (await group_with(a, alice)).conversation_id
    await send(a, cid, alice)
    for seq in (2, 3, 4):
        with counted(a, monkeypatch) as count:
            assert await send(a, cid, alice) == seq
        assert count.requests == 5


async def test_the_view_follows_one_round_of_another_instance_with_no_member_read(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round committed through another instance is in the head it reads: the access check
    stays one request, and a role change there is seen at once."""
    a, b = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    await send(b, cid, bob)
    await send(a, cid, alice)
    with counted(b, monkeypatch) as count:
        found = await b.member_role(cid, bob)
    assert found is not None and found[1] == Role.MEMBER and count.requests == 1
    await a.change_members(
        cid, alice, [MembershipChange(bob, EventKind.MEMBER_ROLE_CHANGED, Role.ADMIN)], 1.0
    )
    with counted(b, monkeypatch) as count:
        found = await b.member_role(cid, bob)
    assert found is not None and found[1] == Role.ADMIN and count.requests == 1
    assert found[0].last_seq == 3


async def test_a_view_left_behind_reads_the_member_row(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rounds elsewhere (a removal among them) leave the view behind: the row is read."""
    a, b = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    await send(b, cid, bob)
    await a.change_members(cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], 1.0)
    await send(a, cid, alice)
    with counted(b, monkeypatch) as count:
        assert await b.member_role(cid, bob) is None
    assert count.requests == 2
    with pytest.raises(NotMemberError):
        await b.append_message(new_message(cid, bob))


async def test_a_removal_binds_on_a_warm_instance_before_its_rows_are_written(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal whose writer died right after its LWT (member rows not yet updated) already
    refuses the removed user through another instance: the view follows the log's head."""
    a, b = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    await send(b, cid, bob)

    async def crash(*args: Any) -> None:
        raise RuntimeError("process died")

    monkeypatch.setattr(a._rounds, "_materialize", crash)
    with pytest.raises(RuntimeError):
        await a.change_members(
            cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], time.time()
        )
    assert await b.member_role(cid, bob) is None
    with pytest.raises(NotMemberError):
        await b.append_message(new_message(cid, bob))
    # The refused send completed the removal's round on the way: the log is whole.
    assert [e.kind for e in await b.events_after(cid, 0, 10)] == [
        EventKind.MESSAGE_CREATED,
        EventKind.MEMBER_REMOVED,
    ]
    assert await b.get_member(cid, bob) is None


async def test_a_lost_race_with_a_removal_refuses_the_send(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access check passed just before the removal committed elsewhere: the append's LWT
    fails (the head moved), the view follows the removal, and the send is refused."""
    a, b = stores
    alice, bob = user("alice"), user("bob")
    cid = (await group_with(a, alice, [bob])).conversation_id
    await send(b, cid, bob)
    assert await b.member_role(cid, bob) is not None
    await a.change_members(cid, alice, [MembershipChange(bob, EventKind.MEMBER_REMOVED)], 1.0)
    # b still holds the head of its check (seq 1); its round tries IF last_seq = 1.
    with pytest.raises(NotMemberError):
        await b.append_message(new_message(cid, bob))
    assert [e.seq for e in await a.events_after(cid, 0, 10)] == [1, 2]


async def test_the_fanout_audience_of_a_send_costs_no_read(
    stores: list[ScyllaChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one read of the member partition, the audience of each following send of this
    process is known from its own rounds; a removal elsewhere is read again."""
    a, b = stores
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    cid = (await group_with(a, alice, [bob, carol])).conversation_id
    await send(a, cid, alice)
    assert sorted(await a.members_since(cid, 1)) == sorted([alice, bob, carol])
    for seq in (2, 3):
        assert await send(a, cid, alice) == seq
        with counted(a, monkeypatch) as count:
            assert sorted(await a.members_since(cid, seq)) == sorted([alice, bob, carol])
        assert count.requests == 0
    [removed] = await b.change_members(
        cid, alice, [MembershipChange(carol, EventKind.MEMBER_REMOVED)], 1.0
    )
    with counted(a, monkeypatch) as count:
        assert sorted(await a.members_since(cid, removed.seq)) == sorted([alice, bob])
    assert count.requests == 1
