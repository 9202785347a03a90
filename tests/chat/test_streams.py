"""SPEC guarantee 4 on SubscribeEvents: replay after a cursor, CaughtUp, then live, no gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.events.v1 import events_pb2

from .support import Client, EventReader, is_created_for

pytestmark = pytest.mark.timeout(30)


def payload(event: events_pb2.ConversationEvent) -> str:
    kind = event.WhichOneof("payload")
    assert kind is not None
    return str(kind)


async def read_seqs_until(
    reader: EventReader, cid: str, last_seq: int, wait_s: float = 10.0
) -> list[int]:
    """The seqs of `cid` the reader gets (replay and live) until it has seen `last_seq`."""
    got = [e.seq for e in reader.replayed if e.conversation_id == cid]
    async with asyncio.timeout(wait_s):
        while not got or got[-1] < last_seq:
            event = await reader.next_event(wait_s)
            if event.conversation_id == cid and event.seq:
                got.append(event.seq)
    return got


async def test_resume_replays_edits_and_deletes_of_older_messages(
    client: Callable[[str], Client],
) -> None:
    """Resuming from a cursor replays every later event in seq order, edits and deletes included."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob)
    for i in range(5):
        await alice.send(cid, f"m{i + 1}")
    await alice.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=2, body="m2 edited"),
        metadata=alice.md,
    )
    await alice.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=3), metadata=alice.md
    )
    await alice.add(cid, carol)
    await alice.send(cid, "m9")

    stream = await bob.subscribe((cid, 5))
    replayed = stream.replayed
    assert [(e.seq, payload(e)) for e in replayed] == [
        (6, "message_edited"),
        (7, "message_deleted"),
        (8, "membership_changed"),
        (9, "message_created"),
    ]
    assert replayed[0].message_edited.message.seq == 2
    assert replayed[0].message_edited.message.body == "m2 edited"
    assert replayed[1].message_deleted.message.seq == 3
    assert replayed[1].message_deleted.message.deleted
    assert replayed[2].membership_changed.user_id == "carol"
    assert stream.caught_up is not None and list(stream.caught_up.revoked_conversation_ids) == []
    await alice.send(cid, "live")
    live = await stream.next_event()
    assert (live.seq, live.message_created.message.body) == (10, "live")
    stream.close()


async def test_replay_of_a_deleted_message_carries_no_body(client: Callable[[str], Client]) -> None:
    """Replaying from before a delete shows the creation and edits as tombstones, no body."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "secret")
    await alice.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="secret v2"),
        metadata=alice.md,
    )
    await alice.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=1), metadata=alice.md
    )
    stream = await bob.subscribe((cid, 0))
    assert [payload(e) for e in stream.replayed] == [
        "message_created",
        "message_edited",
        "message_deleted",
    ]
    created = stream.replayed[0].message_created.message
    edited = stream.replayed[1].message_edited.message
    for message in (created, edited):
        assert (message.body, message.deleted) == ("", True)
    stream.close()


async def test_resume_from_the_newest_seq_replays_nothing(client: Callable[[str], Client]) -> None:
    """A cursor at the newest seq gets CaughtUp at once, then only new events."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "seen")
    stream = await bob.subscribe((cid, 1))
    assert stream.replayed == []
    await alice.send(cid, "new")
    assert (await stream.next_event()).seq == 2
    stream.close()


async def test_replay_spans_many_pages(client: Callable[[str], Client]) -> None:
    """A replay longer than one store page arrives complete and in order."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for start in range(0, 1100, 100):
        await asyncio.gather(*(alice.send(cid, f"m{i}") for i in range(start, start + 100)))
    stream = await bob.subscribe((cid, 50))
    assert [e.seq for e in stream.replayed] == list(range(51, 1101))
    stream.close()


async def test_replay_then_live_has_no_gap_or_duplicate(client: Callable[[str], Client]) -> None:
    """With sends racing the stream's start, replay plus live give every seq once, in order."""
    users = [client(f"user{i}") for i in range(5)]
    reader = client("reader")
    cid = await users[0].group(*users[1:], reader)
    for i in range(10):
        await users[0].send(cid, f"before {i}")

    async def send_burst(sender: Client) -> int:
        last = 0
        for i in range(40):
            last = max(last, (await sender.send(cid, f"{sender.user_id} {i}")).message.seq)
        return last

    senders = [asyncio.create_task(send_burst(u)) for u in users]
    await asyncio.sleep(0.01)
    stream = await reader.subscribe((cid, 5))
    second = await client("reader").subscribe((cid, 5))
    assert not all(s.done() for s in senders), "the sends ended before the streams started"
    last_seq = max(await asyncio.gather(*senders))
    assert last_seq == 210
    got = await read_seqs_until(stream, cid, last_seq)
    assert got == list(range(6, 211))
    assert await read_seqs_until(second, cid, last_seq) == got
    stream.close()
    second.close()


async def test_cursors_of_several_conversations_replay_each_in_order(
    client: Callable[[str], Client],
) -> None:
    """Each cursor's conversation is replayed after its seq, in seq order."""
    alice, bob = client("alice"), client("bob")
    one, two = await alice.group(bob), await alice.group(bob)
    for i in range(4):
        await alice.send(one, f"one {i}")
        await alice.send(two, f"two {i}")
    stream = await bob.subscribe((one, 1), (two, 3))
    by_conversation = {
        cid: [e.seq for e in stream.replayed if e.conversation_id == cid] for cid in (one, two)
    }
    assert by_conversation == {one: [2, 3, 4], two: [4]}
    stream.close()


async def test_conversation_without_cursor_is_live_only(client: Callable[[str], Client]) -> None:
    """A conversation not named in the cursors replays nothing but delivers live events."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "old")
    stream = await bob.subscribe()
    assert stream.replayed == []
    await alice.send(cid, "new")
    event = await stream.next_event()
    assert (event.seq, event.message_created.message.body) == (2, "new")
    stream.close()


async def test_senders_other_device_gets_the_message(client: Callable[[str], Client]) -> None:
    """A message sent from one device reaches the sender's other devices."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    phone = await client("alice").subscribe()
    await alice.send(cid, "from the laptop")
    event = await phone.next_event()
    assert (event.seq, event.message_created.message.sender_id) == (1, "alice")
    phone.close()


async def test_members_get_conversation_created(client: Callable[[str], Client]) -> None:
    """Creating a conversation sends a live ConversationCreated (seq 0) to its members."""
    alice, bob = client("alice"), client("bob")
    stream = await bob.subscribe()
    cid = await alice.group(bob, title="new group")
    event = await stream.next_event()
    assert is_created_for(cid)(event)
    assert event.seq == 0
    assert event.conversation_created.conversation.title == "new group"
    stream.close()


@pytest.mark.parametrize("kind", ["group", "channel"])
async def test_added_member_gets_live_events_from_then_on(
    client: Callable[[str], Client], kind: str
) -> None:
    """A member added while its stream is open gets the addition and every later event."""
    alice, carol = client("alice"), client("carol")
    cid = await (alice.group() if kind == "group" else alice.open_channel())
    await alice.send(cid, "before carol")
    stream = await carol.subscribe()
    added = await alice.add(cid, carol)
    await alice.send(cid, "welcome")
    await alice.send(cid, "again")
    events = [await stream.next_event() for _ in range(3)]
    assert [e.seq for e in events] == [added.last_seq, added.last_seq + 1, added.last_seq + 2]
    assert events[0].membership_changed.change == events_pb2.MEMBERSHIP_CHANGE_ADDED
    assert events[1].message_created.message.body == "welcome"
    stream.close()


@pytest.mark.parametrize("kind", ["group", "channel"])
async def test_added_member_gets_post_racing_the_addition(
    client: Callable[[str], Client], kind: str
) -> None:
    """A post committed right after a member's addition reaches that member's open stream."""
    alice = client("alice")
    lost: list[int] = []
    for trial in range(40):
        carol = client(f"carol{trial}")
        cid = await (alice.group() if kind == "group" else alice.open_channel())
        stream = await carol.subscribe()
        results: list[Any] = await asyncio.gather(
            alice.add(cid, carol), *(alice.send(cid, f"welcome {i}") for i in range(5))
        )
        added: pb.AddMembersResponse = results[0]
        sent: list[pb.SendMessageResponse] = results[1:]
        later = {s.message.seq for s in sent if s.message.seq > added.last_seq}
        marker = await alice.direct(carol)
        seen = await stream.events_until(is_created_for(marker))
        if not later <= {e.seq for e in seen if e.conversation_id == cid}:
            lost.append(trial)
        stream.close()
    assert lost == [], f"the new member missed a post in trials {lost}"


async def test_channel_posts_reach_members(client: Callable[[str], Client]) -> None:
    """Posts in a channel (fanned out on read) reach every member's stream once."""
    alice = client("alice")
    readers = [client(f"reader{i}") for i in range(5)]
    cid = await alice.open_channel(*readers)
    streams = [await r.subscribe() for r in readers]
    for i in range(3):
        await alice.send(cid, f"post {i}")
    for stream in streams:
        assert await read_seqs_until(stream, cid, 3) == [1, 2, 3]
        stream.close()
