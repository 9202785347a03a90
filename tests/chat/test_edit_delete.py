"""SPEC guarantee 6: only the sender edits; sender or group owner/admin deletes; tombstones."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2

from .support import Client, expect_code

pytestmark = pytest.mark.timeout(20)

DENIED = grpc.StatusCode.PERMISSION_DENIED


async def edit(actor: Client, cid: str, seq: int, body: str) -> pb.EditMessageResponse:
    response: pb.EditMessageResponse = await actor.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=seq, body=body), metadata=actor.md
    )
    return response


async def delete(actor: Client, cid: str, seq: int) -> pb.DeleteMessageResponse:
    response: pb.DeleteMessageResponse = await actor.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=seq), metadata=actor.md
    )
    return response


async def message_at(reader: Client, cid: str, seq: int) -> types_pb2.Message:
    [message] = [m for m in await reader.all_messages(cid) if m.seq == seq]
    return message


async def test_sender_edits_and_version_bumps(client: Callable[[str], Client]) -> None:
    """Each edit by the sender replaces the body, bumps version and takes the next seq."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    sent = await alice.send(cid, "helo")
    first = await edit(alice, cid, 1, "hello")
    second = await edit(alice, cid, 1, "hello!")
    assert (first.event_seq, first.message.version, first.message.body) == (2, 2, "hello")
    assert (second.event_seq, second.message.version, second.message.body) == (3, 3, "hello!")
    assert first.message.HasField("edited_at")
    stored = await message_at(bob, cid, 1)
    assert (stored.body, stored.version, stored.message_id) == (
        "hello!",
        3,
        sent.message.message_id,
    )
    assert stored.HasField("edited_at")
    assert (await bob.conversation(cid)).conversation.last_seq == 3


async def test_only_the_sender_edits(client: Callable[[str], Client]) -> None:
    """Nobody but the sender edits a message, not even the group owner."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await bob.send(cid, "bob's words")
    await expect_code(DENIED, edit(alice, cid, 1, "alice's words"))
    stored = await message_at(alice, cid, 1)
    assert (stored.body, stored.version) == ("bob's words", 1)


async def test_sender_deletes_leaving_a_tombstone(client: Callable[[str], Client]) -> None:
    """A delete keeps the seq and drops body and mentions for everyone (attachments too:
    tests/media covers those with a real media_service)."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    sent = await alice.chat.SendMessage(
        pb.SendMessageRequest(
            conversation_id=cid, client_msg_id="with-mention", body="look, bob", mentions=["bob"]
        ),
        metadata=alice.md,
    )
    assert list(sent.message.mentions) == ["bob"]
    assert list((await message_at(bob, cid, 1)).mentions) == ["bob"]
    await alice.send(cid, "after")
    deleted = await delete(alice, cid, 1)
    assert deleted.event_seq == 3
    for tombstone in (deleted.message, await message_at(bob, cid, 1)):
        assert tombstone.deleted
        assert (tombstone.seq, tombstone.body, list(tombstone.mentions)) == (1, "", [])
    assert [m.seq for m in await bob.all_messages(cid)] == [1, 2]


@pytest.mark.parametrize("role", [types_pb2.ROLE_OWNER, types_pb2.ROLE_ADMIN])
async def test_group_owner_and_admin_delete_any_message(
    client: Callable[[str], Client], role: types_pb2.Role
) -> None:
    """The owner or an admin of a group deletes another member's message."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(carol)
    await alice.add(cid, bob, role=types_pb2.ROLE_ADMIN)
    await carol.send(cid, "carol's")
    deleter = alice if role == types_pb2.ROLE_OWNER else bob
    deleted = await delete(deleter, cid, 2)
    assert deleted.message.deleted and deleted.event_seq == 3
    assert (await message_at(carol, cid, 2)).deleted


async def test_member_cannot_delete_others_message(client: Callable[[str], Client]) -> None:
    """A plain member cannot delete another member's message."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    await carol.send(cid, "carol's")
    await expect_code(DENIED, delete(bob, cid, 1))
    assert not (await message_at(alice, cid, 1)).deleted


async def test_direct_peer_cannot_delete_others_message(client: Callable[[str], Client]) -> None:
    """In a direct conversation (no roles), only the sender deletes."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.direct(bob)
    await bob.send(cid, "bob's")
    await expect_code(DENIED, delete(alice, cid, 1))
    assert not (await message_at(bob, cid, 1)).deleted


async def test_edit_of_deleted_message_is_refused(client: Callable[[str], Client]) -> None:
    """A deleted message cannot be edited back to life."""
    alice = client("alice")
    cid = await alice.group()
    await alice.send(cid, "oops")
    await delete(alice, cid, 1)
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, edit(alice, cid, 1, "revived"))
    stored = await message_at(alice, cid, 1)
    assert stored.deleted and stored.body == ""
    assert (await alice.conversation(cid)).conversation.last_seq == 2


async def test_second_delete_writes_nothing(client: Callable[[str], Client]) -> None:
    """Deleting a deleted message returns the tombstone and takes no new seq."""
    alice = client("alice")
    cid = await alice.group()
    await alice.send(cid, "oops")
    await delete(alice, cid, 1)
    again = await delete(alice, cid, 1)
    assert again.message.deleted
    assert again.event_seq == 0
    assert (await alice.conversation(cid)).conversation.last_seq == 2


async def test_edit_of_a_seq_that_is_not_a_message_is_not_found(
    client: Callable[[str], Client],
) -> None:
    """A seq that holds a membership event, or lies past the end, is NOT_FOUND for edits."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group()
    await alice.add(cid, bob)
    await expect_code(grpc.StatusCode.NOT_FOUND, edit(alice, cid, 1, "x"))
    await expect_code(grpc.StatusCode.NOT_FOUND, delete(alice, cid, 5))


async def test_edit_and_delete_fan_out_to_members(client: Callable[[str], Client]) -> None:
    """Edits and deletes reach every member's stream as events with their own seqs."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    streams = [await u.subscribe() for u in (alice, bob, carol)]
    await alice.send(cid, "draft")
    await edit(alice, cid, 1, "final")
    await delete(alice, cid, 1)
    for stream in streams:
        events = [await stream.next_event() for _ in range(3)]
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[0].message_created.message.body == "draft"
        edited = events[1].message_edited.message
        assert (edited.seq, edited.version, edited.body) == (1, 2, "final")
        tombstone = events[2].message_deleted.message
        assert (tombstone.seq, tombstone.deleted, tombstone.body) == (1, True, "")
        assert events[2].actor_id == "alice"
        stream.close()
