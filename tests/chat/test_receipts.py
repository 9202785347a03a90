"""SPEC guarantee 7: read and delivered markers only move forward; unread counts what it should."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2

from .support import Client, is_created_for

pytestmark = pytest.mark.timeout(20)


async def mark_read(who: Client, cid: str, seq: int) -> pb.MarkReadResponse:
    response: pb.MarkReadResponse = await who.chat.MarkRead(
        pb.MarkReadRequest(conversation_id=cid, seq=seq), metadata=who.md
    )
    return response


async def mark_delivered(who: Client, cid: str, seq: int) -> pb.MarkDeliveredResponse:
    response: pb.MarkDeliveredResponse = await who.chat.MarkDelivered(
        pb.MarkDeliveredRequest(conversation_id=cid, seq=seq), metadata=who.md
    )
    return response


async def unread(who: Client, cid: str) -> int:
    return (await who.conversation(cid)).unread_count


async def listed(who: Client) -> dict[str, types_pb2.ConversationView]:
    response: pb.ListConversationsResponse = await who.chat.ListConversations(
        pb.ListConversationsRequest(), metadata=who.md
    )
    return {v.conversation.conversation_id: v for v in response.conversations}


async def test_read_marker_only_moves_forward(client: Callable[[str], Client]) -> None:
    """Marking an older seq read is not an error; the marker stays where it was."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for i in range(5):
        await alice.send(cid, f"m{i}")
    moved = await mark_read(bob, cid, 4)
    assert (moved.last_read_seq, moved.unread_count) == (4, 1)
    kept = await mark_read(bob, cid, 2)
    assert (kept.last_read_seq, kept.unread_count) == (4, 1)
    view = await bob.conversation(cid)
    assert (view.last_read_seq, view.unread_count) == (4, 1)


async def test_delivered_marker_only_moves_forward(client: Callable[[str], Client]) -> None:
    """Marking an older seq delivered keeps the marker; reading moves delivered along."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for i in range(5):
        await alice.send(cid, f"m{i}")
    assert (await mark_delivered(bob, cid, 3)).last_delivered_seq == 3
    assert (await mark_delivered(bob, cid, 1)).last_delivered_seq == 3
    await mark_read(bob, cid, 5)
    view = await bob.conversation(cid)
    assert (view.last_read_seq, view.last_delivered_seq) == (5, 5)
    assert (await mark_delivered(bob, cid, 4)).last_delivered_seq == 5


async def test_read_marker_stops_at_the_log_end(client: Callable[[str], Client]) -> None:
    """Marking past the newest seq leaves later messages unread."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "one")
    assert (await mark_read(bob, cid, 100)).last_read_seq == 1
    await alice.send(cid, "two")
    assert await unread(bob, cid) == 1


async def test_unread_excludes_own_messages(client: Callable[[str], Client]) -> None:
    """A user's own messages never count as unread for it."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for i in range(3):
        await alice.send(cid, f"a{i}")
    for i in range(2):
        await bob.send(cid, f"b{i}")
    assert await unread(alice, cid) == 2
    assert await unread(bob, cid) == 0


async def test_own_send_moves_both_markers(client: Callable[[str], Client]) -> None:
    """SPEC 7: a user's own send moves both of that user's markers to the new message."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for i in range(3):
        await alice.send(cid, f"a{i}")
    before = await bob.conversation(cid)
    assert (before.last_read_seq, before.last_delivered_seq, before.unread_count) == (0, 0, 3)
    await bob.send(cid, "reply")
    after = await bob.conversation(cid)
    assert (after.last_read_seq, after.last_delivered_seq, after.unread_count) == (4, 4, 0)


async def test_unread_excludes_deleted_messages(client: Callable[[str], Client]) -> None:
    """A deleted message no longer counts as unread."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "keep")
    await alice.send(cid, "regret")
    await alice.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=2), metadata=alice.md
    )
    assert await unread(bob, cid) == 1


async def test_unread_excludes_edit_and_membership_events(client: Callable[[str], Client]) -> None:
    """Edits, deletes and membership changes take seqs but are not unread messages."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob)
    await alice.send(cid, "one")
    await mark_read(bob, cid, 1)
    await alice.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="uno"), metadata=alice.md
    )
    await alice.add(cid, carol)
    await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="carol"), metadata=alice.md
    )
    view = await bob.conversation(cid)
    assert (view.conversation.last_seq, view.unread_count) == (4, 0)


async def test_new_member_has_no_unread_history(client: Callable[[str], Client]) -> None:
    """Messages sent before a member joined are not unread for it."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group()
    for i in range(3):
        await alice.send(cid, f"m{i}")
    await alice.add(cid, bob)
    assert await unread(bob, cid) == 0
    await alice.send(cid, "after joining")
    assert await unread(bob, cid) == 1


async def test_list_conversations_carries_unread_and_last_message(
    client: Callable[[str], Client],
) -> None:
    """ListConversations shows each conversation's unread count and newest message."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    group = await alice.group(bob)
    direct = await carol.direct(bob)
    await alice.send(group, "g1")
    await alice.send(group, "g2")
    await carol.send(direct, "d1")
    views = await listed(bob)
    assert set(views) == {group, direct}
    assert (views[group].unread_count, views[group].last_message.body) == (2, "g2")
    assert (views[direct].unread_count, views[direct].last_message.body) == (1, "d1")
    assert views[direct].peer_user_id == "carol"
    await mark_read(bob, group, 2)
    assert (await listed(bob))[group].unread_count == 0


async def test_list_conversations_puts_most_recent_first(client: Callable[[str], Client]) -> None:
    """ListConversations orders conversations by their newest activity."""
    alice, bob = client("alice"), client("bob")
    first = await alice.group(bob)
    second = await alice.group(bob)
    await alice.send(second, "older")
    await alice.send(first, "newer")
    response = await bob.chat.ListConversations(pb.ListConversationsRequest(), metadata=bob.md)
    assert [v.conversation.conversation_id for v in response.conversations] == [first, second]


async def test_last_message_of_deleted_newest_is_a_tombstone(
    client: Callable[[str], Client],
) -> None:
    """When the newest message is deleted, last_message is its tombstone, without body."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "first")
    await alice.send(cid, "secret")
    await alice.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=2), metadata=alice.md
    )
    last = (await listed(bob))[cid].last_message
    assert (last.seq, last.deleted, last.body) == (2, True, "")


async def test_receipt_reaches_the_other_member_of_a_direct(
    client: Callable[[str], Client],
) -> None:
    """When alice reads, bob's stream gets a live ReceiptMoved (seq 0) with her markers."""
    alice, bob = client("alice"), client("bob")
    cid = await bob.direct(alice)
    await bob.send(cid, "hi")
    await bob.send(cid, "there")
    stream = await bob.subscribe()
    await mark_read(alice, cid, 2)
    event = await stream.next_event()
    assert (event.conversation_id, event.seq, event.actor_id) == (cid, 0, "alice")
    receipt = event.receipt_moved
    assert (receipt.user_id, receipt.last_read_seq, receipt.last_delivered_seq) == ("alice", 2, 2)
    stream.close()


async def test_receipt_does_not_reach_a_blocked_user(client: Callable[[str], Client]) -> None:
    """A user alice has blocked learns nothing of her receipts."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await bob.direct(alice)
    await bob.send(cid, "hi")
    await alice.block(bob)
    stream = await bob.subscribe()
    await mark_read(alice, cid, 1)
    await mark_delivered(alice, cid, 1)
    marker = await carol.direct(bob)
    seen = await stream.events_until(is_created_for(marker))
    assert [e for e in seen if e.HasField("receipt_moved")] == []
    stream.close()


async def test_marking_an_older_seq_sends_no_receipt(client: Callable[[str], Client]) -> None:
    """A mark that does not move the marker sends no ReceiptMoved."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await bob.direct(alice)
    await bob.send(cid, "one")
    await bob.send(cid, "two")
    await mark_read(alice, cid, 2)
    stream = await bob.subscribe()
    await mark_read(alice, cid, 1)
    await mark_delivered(alice, cid, 2)
    marker = await carol.direct(bob)
    seen = await stream.events_until(is_created_for(marker))
    assert [e for e in seen if e.HasField("receipt_moved")] == []
    stream.close()


async def test_list_conversations_pages_without_overlap(client: Callable[[str], Client]) -> None:
    """Paging ListConversations two at a time returns every conversation exactly once."""
    alice, bob = client("alice"), client("bob")
    cids = [await alice.group(bob) for _ in range(5)]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page: pb.ListConversationsResponse = await bob.chat.ListConversations(
            pb.ListConversationsRequest(page_size=2, page_token=token), metadata=bob.md
        )
        assert len(page.conversations) <= 2
        seen.extend(v.conversation.conversation_id for v in page.conversations)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(cids)


async def test_archived_conversations_are_listed_only_on_request(
    client: Callable[[str], Client],
) -> None:
    """ListConversations hides archived conversations unless include_archived is set."""
    alice = client("alice")
    kept, archived = await alice.group(), await alice.group()
    await alice.chat.UpdateConversation(
        pb.UpdateConversationRequest(conversation_id=archived, archived=True), metadata=alice.md
    )
    assert set(await listed(alice)) == {kept}
    everything = await alice.chat.ListConversations(
        pb.ListConversationsRequest(include_archived=True), metadata=alice.md
    )
    assert {v.conversation.conversation_id for v in everything.conversations} == {kept, archived}
