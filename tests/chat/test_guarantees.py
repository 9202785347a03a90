"""SPEC guarantees 1-3 over gRPC: durable acks, gapless order, idempotent retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from .support import ChatHarness, Client, seqs

pytestmark = pytest.mark.timeout(30)


async def test_fifty_concurrent_senders_get_gapless_seqs(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """50 members sending at once get seqs 1..N, none skipped or repeated, and history agrees."""
    users = [client(f"user{i:02d}") for i in range(50)]
    cid = await users[0].group(*users[1:])
    acks = await asyncio.gather(
        *(u.send(cid, f"{u.user_id} #{n}") for n in range(4) for u in users)
    )
    assert sorted(a.message.seq for a in acks) == list(range(1, 201))
    assert not any(a.duplicate for a in acks)
    history = await users[7].all_messages(cid)
    assert seqs(history) == list(range(1, 201))
    by_seq = {a.message.seq: a.message for a in acks}
    for message in history:
        acked = by_seq[message.seq]
        assert (message.message_id, message.sender_id, message.body) == (
            acked.message_id,
            acked.sender_id,
            acked.body,
        )
    assert (await users[3].conversation(cid)).conversation.last_seq == 200


async def test_senders_in_many_conversations_get_gapless_seqs_in_each(
    client: Callable[[str], Client],
) -> None:
    """Concurrent senders spread over 5 conversations get gapless seqs in every one."""
    users = [client(f"user{i:02d}") for i in range(10)]
    cids = [await users[0].group(*users[1:]) for _ in range(5)]
    acks = await asyncio.gather(
        *(u.send(cid, f"{u.user_id}") for cid in cids for u in users for _ in range(3))
    )
    for cid in cids:
        got = sorted(a.message.seq for a in acks if a.message.conversation_id == cid)
        assert got == list(range(1, 31))
        assert seqs(await users[0].all_messages(cid)) == got


async def test_retried_send_returns_the_original(client: Callable[[str], Client]) -> None:
    """A retry with the same client_msg_id returns the original message, marked duplicate."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    first = await alice.send(cid, "first", client_msg_id="retry-me")
    retry = await alice.send(cid, "a different body", client_msg_id="retry-me")
    assert not first.duplicate
    assert retry.duplicate
    assert (retry.message.seq, retry.message.message_id, retry.message.body) == (
        first.message.seq,
        first.message.message_id,
        "first",
    )
    history = await bob.all_messages(cid)
    assert [(m.seq, m.body) for m in history] == [(1, "first")]
    assert (await bob.conversation(cid)).conversation.last_seq == 1


async def test_concurrent_retries_store_one_message(client: Callable[[str], Client]) -> None:
    """Ten racing sends with one client_msg_id store one message and all return it."""
    alice = client("alice")
    cid = await alice.group()
    acks = await asyncio.gather(*(alice.send(cid, "once", client_msg_id="k") for _ in range(10)))
    assert sum(not a.duplicate for a in acks) == 1
    assert {(a.message.seq, a.message.message_id) for a in acks} == {
        (1, acks[0].message.message_id)
    }
    assert seqs(await alice.all_messages(cid)) == [1]


async def test_client_msg_id_of_another_sender_is_a_new_message(
    client: Callable[[str], Client],
) -> None:
    """The same client_msg_id from two senders makes two messages."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    a = await alice.send(cid, client_msg_id="k")
    b = await bob.send(cid, client_msg_id="k")
    assert not b.duplicate
    assert (a.message.seq, b.message.seq) == (1, 2)


async def test_retry_after_restart_returns_the_original(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """A retry after a server restart on the same data dir still returns the original."""
    alice = client("alice")
    cid = await alice.group()
    first = await alice.send(cid, "before restart", client_msg_id="k")
    await alice.send(cid, "another")
    await chat_server.restart()
    retry = await alice.send(cid, "after restart", client_msg_id="k")
    assert retry.duplicate
    assert (retry.message.seq, retry.message.message_id, retry.message.body) == (
        first.message.seq,
        first.message.message_id,
        "before restart",
    )
    assert seqs(await alice.all_messages(cid)) == [1, 2]


async def test_acknowledged_state_survives_restart(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """Everything acknowledged before a restart is there after it, and seqs continue."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, title="durable")
    acks = await asyncio.gather(*(u.send(cid, f"m{i}") for i in range(30) for u in (alice, bob)))
    await alice.chat.EditMessage(
        pb.EditMessageRequest(
            conversation_id=cid,
            message_seq=next(a.message.seq for a in acks if a.message.sender_id == "alice"),
            body="edited",
        ),
        metadata=alice.md,
    )
    await alice.add(cid, carol)
    await bob.chat.MarkRead(pb.MarkReadRequest(conversation_id=cid, seq=10), metadata=bob.md)
    direct = await alice.direct(carol)
    await carol.send(direct, "psst")

    before_history = await bob.all_messages(cid)
    before_view = await bob.conversation(cid)
    before_members = await alice.members(cid)
    await chat_server.restart()

    assert list(await bob.all_messages(cid)) == list(before_history)
    assert await bob.conversation(cid) == before_view
    assert await alice.members(cid) == before_members
    assert (await alice.direct(carol)) == direct
    assert [m.body for m in await alice.all_messages(direct)] == ["psst"]
    after = await carol.send(cid, "after restart")
    assert after.message.seq == before_view.conversation.last_seq + 1


async def test_history_pages_oldest_first_after_a_seq(client: Callable[[str], Client]) -> None:
    """Paging with after_seq walks forward, oldest first, and has_more ends the walk."""
    alice = client("alice")
    cid = await alice.group()
    for i in range(7):
        await alice.send(cid, f"m{i}")
    first = await alice.history(cid, after_seq=1, limit=3)
    assert (seqs(first.messages), first.has_more, first.last_seq) == ([2, 3, 4], True, 7)
    second = await alice.history(cid, after_seq=4, limit=3)
    assert (seqs(second.messages), second.has_more) == ([5, 6, 7], False)
    newest = await alice.history(cid, limit=3)
    assert (seqs(newest.messages), newest.has_more) == ([7, 6, 5], True)
    older = await alice.history(cid, before_seq=5, limit=3)
    assert (seqs(older.messages), older.has_more) == ([4, 3, 2], True)


async def test_list_members_pages_by_token(client: Callable[[str], Client]) -> None:
    """ListMembers pages through every member once, in user id order."""
    alice = client("alice")
    others = [client(f"member{i:02d}") for i in range(7)]
    cid = await alice.group(*others)
    seen: list[str] = []
    token = ""
    while True:
        page: pb.ListMembersResponse = await alice.chat.ListMembers(
            pb.ListMembersRequest(conversation_id=cid, page_size=3, page_token=token),
            metadata=alice.md,
        )
        seen.extend(m.user_id for m in page.members)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(["alice", *(o.user_id for o in others)])
