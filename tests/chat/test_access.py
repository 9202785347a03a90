"""SPEC guarantee 5: membership and blocks are checked on every call, with no existence leak."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2

from .support import Client, expect_code, is_created_for, seqs

pytestmark = pytest.mark.timeout(20)

DENIED = grpc.StatusCode.PERMISSION_DENIED

Call = Callable[[Client, str], Awaitable[Any]]

# Every call on a conversation, made by `who` on conversation `cid`, with otherwise valid fields.
CONVERSATION_CALLS: dict[str, Call] = {
    "SendMessage": lambda who, cid: who.chat.SendMessage(
        pb.SendMessageRequest(conversation_id=cid, client_msg_id="k", body="hi"), metadata=who.md
    ),
    "GetHistory": lambda who, cid: who.chat.GetHistory(
        pb.GetHistoryRequest(conversation_id=cid), metadata=who.md
    ),
    "GetConversation": lambda who, cid: who.chat.GetConversation(
        pb.GetConversationRequest(conversation_id=cid), metadata=who.md
    ),
    "MarkRead": lambda who, cid: who.chat.MarkRead(
        pb.MarkReadRequest(conversation_id=cid, seq=1), metadata=who.md
    ),
    "MarkDelivered": lambda who, cid: who.chat.MarkDelivered(
        pb.MarkDeliveredRequest(conversation_id=cid, seq=1), metadata=who.md
    ),
    "EditMessage": lambda who, cid: who.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="edited"), metadata=who.md
    ),
    "DeleteMessage": lambda who, cid: who.chat.DeleteMessage(
        pb.DeleteMessageRequest(conversation_id=cid, message_seq=1), metadata=who.md
    ),
    "ListMembers": lambda who, cid: who.chat.ListMembers(
        pb.ListMembersRequest(conversation_id=cid), metadata=who.md
    ),
    "AddMembers": lambda who, cid: who.chat.AddMembers(
        pb.AddMembersRequest(conversation_id=cid, user_ids=["mallory-friend"]), metadata=who.md
    ),
    "RemoveMember": lambda who, cid: who.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="bob"), metadata=who.md
    ),
    "SetMemberRole": lambda who, cid: who.chat.SetMemberRole(
        pb.SetMemberRoleRequest(conversation_id=cid, user_id="bob", role=types_pb2.ROLE_ADMIN),
        metadata=who.md,
    ),
    "LeaveConversation": lambda who, cid: who.chat.LeaveConversation(
        pb.LeaveConversationRequest(conversation_id=cid), metadata=who.md
    ),
    "UpdateConversation": lambda who, cid: who.chat.UpdateConversation(
        pb.UpdateConversationRequest(conversation_id=cid, title="hijacked"), metadata=who.md
    ),
    "UpdateMemberSettings": lambda who, cid: who.chat.UpdateMemberSettings(
        pb.UpdateMemberSettingsRequest(conversation_id=cid, muted=True), metadata=who.md
    ),
}

# A conversation id that was never created (the shape of a real one).
MISSING_ID = "01JAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize("rpc", CONVERSATION_CALLS)
async def test_non_member_is_refused(client: Callable[[str], Client], rpc: str) -> None:
    """A user outside a conversation gets PERMISSION_DENIED on every call about it."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob, title="private")
    await alice.send(cid, "secret")
    await expect_code(DENIED, CONVERSATION_CALLS[rpc](mallory, cid))
    history = await alice.history(cid)
    assert [(m.seq, m.body, m.version, m.deleted) for m in history.messages] == [
        (1, "secret", 1, False)
    ]
    view = await alice.conversation(cid)
    assert (view.conversation.title, view.conversation.member_count) == ("private", 2)
    assert view.conversation.last_seq == 1


@pytest.mark.parametrize("rpc", CONVERSATION_CALLS)
async def test_missing_conversation_is_refused_like_a_foreign_one(
    client: Callable[[str], Client], rpc: str
) -> None:
    """A conversation that does not exist answers exactly as one the caller is not in."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob)
    await alice.send(cid, "secret")
    foreign = await expect_code(DENIED, CONVERSATION_CALLS[rpc](mallory, cid))
    missing = await expect_code(DENIED, CONVERSATION_CALLS[rpc](mallory, MISSING_ID))
    assert foreign.replace(cid, "<id>") == missing.replace(MISSING_ID, "<id>")


async def test_cursor_of_foreign_conversation_is_revoked(client: Callable[[str], Client]) -> None:
    """A stream cursor for a conversation the caller is not in replays nothing and is revoked."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob)
    await alice.send(cid, "secret")
    own = await mallory.group()
    await mallory.send(own, "mine")
    stream = await mallory.subscribe((cid, 0), (MISSING_ID, 0), (own, 0))
    assert stream.caught_up is not None
    assert list(stream.caught_up.revoked_conversation_ids) == [cid, MISSING_ID]
    assert [(e.conversation_id, e.seq) for e in stream.replayed] == [(own, 1)]
    stream.close()


async def test_non_member_stream_gets_no_live_events(client: Callable[[str], Client]) -> None:
    """Events of a conversation never reach the stream of a user outside it."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob)
    stream = await mallory.subscribe((cid, 0))
    await alice.send(cid, "secret")
    marker = await alice.direct(mallory)
    seen = await stream.events_until(is_created_for(marker))
    assert [e for e in seen if e.conversation_id == cid] == []
    stream.close()


@pytest.mark.parametrize("kind", ["group", "channel"])
async def test_removed_member_stops_receiving_at_once(
    client: Callable[[str], Client], kind: str
) -> None:
    """After removal a member's open stream gets the removal and nothing more of it."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await (alice.group(bob, carol) if kind == "group" else alice.open_channel(bob, carol))
    await alice.send(cid, "before")
    stream = await carol.subscribe((cid, 1))
    removed = await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="carol"), metadata=alice.md
    )
    await alice.send(cid, "after removal")
    await bob.send(cid, "also after") if kind == "group" else None
    marker = await alice.direct(carol)
    seen = await stream.events_until(is_created_for(marker))
    about_cid = [e for e in seen if e.conversation_id == cid]
    # At-least-once delivery: a duplicate of the removal is allowed, nothing after it is.
    assert {e.seq for e in about_cid} == {removed.seq}
    change = about_cid[0].membership_changed
    assert (change.change, change.user_id) == (events_pb2.MEMBERSHIP_CHANGE_REMOVED, "carol")
    stream.close()


@pytest.mark.parametrize("kind", ["group", "channel"])
async def test_removed_member_gets_no_post_racing_the_removal(
    client: Callable[[str], Client], kind: str
) -> None:
    """A post committed after a member's removal never reaches that member's open stream."""
    alice = client("alice")
    leaked: list[int] = []
    for trial in range(40):
        carol = client(f"carol{trial}")
        cid = await (alice.group(carol) if kind == "group" else alice.open_channel(carol))
        stream = await carol.subscribe()
        removed, *sent = await asyncio.gather(
            alice.chat.RemoveMember(
                pb.RemoveMemberRequest(conversation_id=cid, user_id=carol.user_id),
                metadata=alice.md,
            ),
            *(alice.send(cid, f"after removal? {i}") for i in range(5)),
        )
        later = {s.message.seq for s in sent if s.message.seq > removed.seq}
        marker = await alice.direct(carol)
        seen = await stream.events_until(is_created_for(marker))
        if any(e.conversation_id == cid and e.seq in later for e in seen):
            leaked.append(trial)
        stream.close()
    assert leaked == [], f"removed member got a later post in trials {leaked}"


async def test_send_racing_the_senders_removal_is_never_logged_after_it(
    client: Callable[[str], Client],
) -> None:
    """A member's send racing its removal is refused or lands before the removal, never after."""
    alice = client("alice")
    late: list[int] = []
    for trial in range(20):
        carol = client(f"carol{trial}")
        cid = await alice.group(carol)
        outcomes = await asyncio.gather(
            alice.chat.RemoveMember(
                pb.RemoveMemberRequest(conversation_id=cid, user_id=carol.user_id),
                metadata=alice.md,
            ),
            carol.send(cid, "sneaking in"),
            return_exceptions=True,
        )
        removed: object = outcomes[0]
        sent: object = outcomes[1]
        assert isinstance(removed, pb.RemoveMemberResponse)
        if isinstance(sent, grpc.aio.AioRpcError):
            assert sent.code() == DENIED
        elif isinstance(sent, pb.SendMessageResponse) and sent.message.seq > removed.seq:
            late.append(trial)
    assert late == [], f"a removed member's message was logged after its removal in {late}"


async def test_removed_member_cannot_send_or_read(client: Callable[[str], Client]) -> None:
    """A removed member is refused on send and history, and its old messages stay."""
    alice, carol = client("alice"), client("carol")
    cid = await alice.group(carol)
    await carol.send(cid, "while a member")
    await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="carol"), metadata=alice.md
    )
    await expect_code(DENIED, carol.send(cid, "let me back"))
    await expect_code(DENIED, carol.history(cid))
    await expect_code(DENIED, CONVERSATION_CALLS["EditMessage"](carol, cid))
    assert [m.body for m in await alice.all_messages(cid)] == ["while a member"]


async def test_removed_member_cursor_is_revoked_on_resume(client: Callable[[str], Client]) -> None:
    """A removed member resuming from its cursor gets the conversation revoked, no replay."""
    alice, carol = client("alice"), client("carol")
    cid = await alice.group(carol)
    await alice.send(cid, "one")
    await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="carol"), metadata=alice.md
    )
    await alice.send(cid, "two")
    stream = await carol.subscribe((cid, 1))
    assert stream.caught_up is not None
    assert list(stream.caught_up.revoked_conversation_ids) == [cid]
    assert stream.replayed == []
    stream.close()


async def test_blocked_user_cannot_open_direct_with_blocker(
    client: Callable[[str], Client],
) -> None:
    """A user blocked by alice cannot create a direct conversation with her."""
    alice, bob = client("alice"), client("bob")
    await alice.block(bob)
    await expect_code(DENIED, bob.direct(alice))
    listed = await alice.chat.ListConversations(pb.ListConversationsRequest(), metadata=alice.md)
    assert list(listed.conversations) == []


async def test_blocked_user_cannot_write_existing_direct(client: Callable[[str], Client]) -> None:
    """Once alice blocks bob, bob's sends into their direct conversation are refused."""
    alice, bob = client("alice"), client("bob")
    cid = await bob.direct(alice)
    await bob.send(cid, "hi")
    await alice.block(bob)
    await expect_code(DENIED, bob.send(cid, "hello?"))
    await expect_code(DENIED, bob.direct(alice))
    assert [m.body for m in await alice.all_messages(cid)] == ["hi"]


async def test_unblock_lets_the_user_write_again(client: Callable[[str], Client]) -> None:
    """After alice unblocks bob, bob can write to her again."""
    alice, bob = client("alice"), client("bob")
    cid = await bob.direct(alice)
    await alice.block(bob)
    await alice.chat.UnblockUser(pb.UnblockUserRequest(user_id="bob"), metadata=alice.md)
    assert (await bob.send(cid, "friends again")).message.seq == 1


async def test_opening_existing_direct_returns_it(client: Callable[[str], Client]) -> None:
    """Opening a direct conversation that exists returns it with created False, from both sides."""
    alice, bob = client("alice"), client("bob")
    first = await alice.create(types_pb2.CONVERSATION_KIND_DIRECT, [bob])
    again = await alice.create(types_pb2.CONVERSATION_KIND_DIRECT, [bob])
    other_side = await bob.create(types_pb2.CONVERSATION_KIND_DIRECT, [alice])
    cid = first.conversation.conversation.conversation_id
    assert first.created and not again.created and not other_side.created
    assert again.conversation.conversation.conversation_id == cid
    assert other_side.conversation.conversation.conversation_id == cid
    assert other_side.conversation.peer_user_id == "alice"
    assert first.conversation.peer_user_id == "bob"


async def test_similar_user_ids_never_share_events(client: Callable[[str], Client]) -> None:
    """Events for user 'bob.smith' never reach the user whose id is the hex form of that name."""
    alice = client("alice")
    dotted = client("bob.smith")
    lookalike = client("x" + b"bob.smith".hex())
    stream = await lookalike.subscribe()
    cid = await alice.direct(dotted)
    await alice.send(cid, "for bob.smith only")
    marker = await alice.direct(lookalike)
    seen = await stream.events_until(is_created_for(marker))
    leaked = [e for e in seen if e.conversation_id == cid]
    assert leaked == [], f"{lookalike.user_id} got events of {dotted.user_id}: {leaked}"
    stream.close()


def first_message_of(cid: str) -> Callable[[events_pb2.ConversationEvent], bool]:
    def match(event: events_pb2.ConversationEvent) -> bool:
        return event.conversation_id == cid and event.seq == 1

    return match


async def test_user_ids_with_unusual_characters_get_their_events(
    client: Callable[[str], Client],
) -> None:
    """Users whose ids hold dots, spaces or wildcards receive their own events."""
    alice = client("alice")
    for name in ("bob.smith", "carol jones", "dave*", "erin>"):
        other = client(name)
        stream = await other.subscribe()
        cid = await alice.direct(other)
        await alice.send(cid, f"hi {name}")
        seen = await stream.events_until(first_message_of(cid))
        assert seen[-1].message_created.message.body == f"hi {name}"
        assert seqs(await other.all_messages(cid)) == [1]
        stream.close()
