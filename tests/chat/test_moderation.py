"""Moderators (a service token with scope chat.moderate) work the report queue and act on any
conversation or user; each conversation change is an event members see live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from chatmesh_common.credentials import SCOPE_CHAT_ACCESS
from chatmesh_common.ids import new_id

from .moderation_support import MODERATOR, Moderator, report_message
from .support import ChatHarness, Client, expect_code, is_created_for

pytestmark = pytest.mark.timeout(30)

DENIED = grpc.StatusCode.PERMISSION_DENIED

# Every ModerationService call with otherwise valid fields.
MODERATION_CALLS: dict[str, Any] = {
    "ListReports": mpb.ListReportsRequest(),
    "ResolveReport": mpb.ResolveReportRequest(report_id="r1"),
    "DeleteMessage": mpb.DeleteMessageRequest(conversation_id="c1", message_seq=1),
    "RemoveMember": mpb.RemoveMemberRequest(conversation_id="c1", user_id="bob"),
    "BanMember": mpb.BanMemberRequest(conversation_id="c1", user_id="bob"),
    "UnbanMember": mpb.UnbanMemberRequest(conversation_id="c1", user_id="bob"),
    "SuspendUser": mpb.SuspendUserRequest(user_id="bob"),
    "UnsuspendUser": mpb.UnsuspendUserRequest(user_id="bob"),
    "ListHeld": mpb.ListHeldRequest(),
    "ReleaseHeld": mpb.ReleaseHeldRequest(message_id="m1"),
    "DropHeld": mpb.DropHeldRequest(message_id="m1"),
}


@pytest.fixture
def moderator(chat_server: ChatHarness) -> Moderator:
    return Moderator(chat_server)


def test_every_moderation_rpc_is_covered() -> None:
    """The table above names every method of ModerationService."""
    service = mpb.DESCRIPTOR.services_by_name["ModerationService"]
    assert set(MODERATION_CALLS) == {m.name for m in service.methods}


@pytest.mark.parametrize("method", sorted(MODERATION_CALLS))
async def test_moderation_refuses_users_and_other_scopes(
    chat_server: ChatHarness, client: Callable[[str], Client], method: str
) -> None:
    """A user token (even a conversation owner's) and a service token without chat.moderate
    are PERMISSION_DENIED, naming the scope."""
    alice = client("alice")
    other = Moderator(chat_server, scopes=(SCOPE_CHAT_ACCESS,))
    for md in (alice.md, other.md):
        call = getattr(Moderator(chat_server).moderation, method)
        details = await expect_code(DENIED, call(MODERATION_CALLS[method], metadata=md))
        assert "chat.moderate" in details


async def test_resolve_moves_a_report_from_open_to_resolved(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """Resolved reports leave the open queue, carry the resolution, and stay resolved."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for _ in range(3):
        await alice.send(cid)
    reports = [(await report_message(bob, cid, seq)).report for seq in (1, 2, 3)]
    # Oldest first is by report id: time to the millisecond, then its random part.
    reports.sort(key=lambda r: r.report_id)
    resolved = await moderator.moderation.ResolveReport(
        mpb.ResolveReportRequest(report_id=reports[0].report_id, resolution="warned"),
        metadata=moderator.md,
    )
    assert (resolved.report.status, resolved.report.resolved_by) == (
        types_pb2.REPORT_STATUS_RESOLVED,
        MODERATOR,
    )
    assert resolved.report.resolution == "warned" and resolved.report.HasField("resolved_at")

    async def listed(status: types_pb2.ReportStatus) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            page = await moderator.moderation.ListReports(
                mpb.ListReportsRequest(status=status, page_size=1, page_token=token),
                metadata=moderator.md,
            )
            ids.extend(r.report_id for r in page.reports)
            token = page.next_page_token
            if not token:
                return ids

    assert await listed(types_pb2.REPORT_STATUS_OPEN) == [r.report_id for r in reports[1:]]
    assert await listed(types_pb2.REPORT_STATUS_RESOLVED) == [reports[0].report_id]
    assert await listed(types_pb2.REPORT_STATUS_UNSPECIFIED) == [r.report_id for r in reports]
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        moderator.moderation.ResolveReport(
            mpb.ResolveReportRequest(report_id=new_id()), metadata=moderator.md
        ),
    )


async def test_moderator_deletes_a_message_members_see_it_live(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """A delete in a conversation the moderator is not in: a tombstone for everyone, an event
    with the moderator as actor."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    sent = await alice.send(cid, "abuse")
    stream = await bob.subscribe((cid, sent.message.seq))
    deleted = await moderator.moderation.DeleteMessage(
        mpb.DeleteMessageRequest(conversation_id=cid, message_seq=sent.message.seq),
        metadata=moderator.md,
    )
    assert deleted.message.deleted and deleted.event_seq == sent.message.seq + 1
    event = await stream.next_event()
    assert event.HasField("message_deleted") and event.actor_id == MODERATOR
    assert event.message_deleted.message.body == ""
    history = await alice.history(cid)
    assert history.messages[0].deleted and history.messages[0].body == ""
    again = await moderator.moderation.DeleteMessage(
        mpb.DeleteMessageRequest(conversation_id=cid, message_seq=sent.message.seq),
        metadata=moderator.md,
    )
    assert again.event_seq == 0 and again.message.deleted
    stream.close()


async def test_banned_member_stops_receiving_and_cannot_be_added_until_unbanned(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """A ban removes at once (the stream gets the removal and nothing after), refuses re-adding
    with PERMISSION_DENIED naming the ban, and UnbanMember lifts it."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    await alice.send(cid, "before")
    stream = await carol.subscribe((cid, 1))
    banned = await moderator.moderation.BanMember(
        mpb.BanMemberRequest(conversation_id=cid, user_id="carol", reason="spam"),
        metadata=moderator.md,
    )
    assert banned.seq == 2
    await alice.send(cid, "after the ban")
    marker = await alice.direct(carol)
    seen = await stream.events_until(is_created_for(marker))
    about_cid = [e for e in seen if e.conversation_id == cid]
    assert {e.seq for e in about_cid} == {banned.seq}
    change = about_cid[0].membership_changed
    assert (change.change, change.user_id) == (events_pb2.MEMBERSHIP_CHANGE_REMOVED, "carol")
    assert about_cid[0].actor_id == MODERATOR
    stream.close()
    details = await expect_code(DENIED, alice.add(cid, carol))
    assert "banned" in details and "user_ids" in details
    await moderator.moderation.UnbanMember(
        mpb.UnbanMemberRequest(conversation_id=cid, user_id="carol"), metadata=moderator.md
    )
    added = await alice.add(cid, carol)
    assert [m.user_id for m in added.added] == ["carol"]


async def test_removing_the_owner_hands_ownership_on(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """The longest-serving admin (else member) becomes owner; a second removal is NOT_FOUND."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    await alice.add(cid, client("dave"), role=types_pb2.ROLE_ADMIN)
    await moderator.moderation.RemoveMember(
        mpb.RemoveMemberRequest(conversation_id=cid, user_id="alice"), metadata=moderator.md
    )
    assert (await bob.members(cid)) == {
        "bob": types_pb2.ROLE_MEMBER,
        "carol": types_pb2.ROLE_MEMBER,
        "dave": types_pb2.ROLE_OWNER,
    }
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        moderator.moderation.RemoveMember(
            mpb.RemoveMemberRequest(conversation_id=cid, user_id="alice"), metadata=moderator.md
        ),
    )


async def test_direct_conversations_have_no_bans(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """FAILED_PRECONDITION pointing at suspension; an unknown conversation is NOT_FOUND."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.direct(bob)
    details = await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        moderator.moderation.BanMember(
            mpb.BanMemberRequest(conversation_id=cid, user_id="bob"), metadata=moderator.md
        ),
    )
    assert "suspend" in details
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        moderator.moderation.BanMember(
            mpb.BanMemberRequest(conversation_id=new_id(), user_id="bob"), metadata=moderator.md
        ),
    )


async def test_suspended_user_is_refused_and_their_stream_ends(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """Sends and writes are PERMISSION_DENIED naming the suspension, the open stream ends with
    it, a new stream is refused; after UnsuspendUser all works again."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    stream = await bob.subscribe()
    await moderator.moderation.SuspendUser(
        mpb.SuspendUserRequest(user_id="bob", reason="spam wave"), metadata=moderator.md
    )
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(10):
            while True:
                await stream.call.read()
    assert ended.value.code() == DENIED and "suspended" in (ended.value.details() or "")
    writes = [
        bob.send(cid, "hi"),
        bob.group(alice),
        bob.chat.EditMessage(
            pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="x"), metadata=bob.md
        ),
        report_message(bob, cid, 1),
    ]
    for write in writes:
        details = await expect_code(DENIED, write)
        assert "suspended" in details and "spam wave" in details
    refused = await bob.subscribe_error()
    assert refused.code() == DENIED and "suspended" in (refused.details() or "")
    assert (await bob.history(cid)).last_seq == 0  # reads stay allowed; nothing was written
    await moderator.moderation.UnsuspendUser(
        mpb.UnsuspendUserRequest(user_id="bob"), metadata=moderator.md
    )
    sent = await bob.send(cid, "back")
    assert sent.message.seq == 1


async def test_an_add_racing_a_ban_leaves_the_user_out(
    client: Callable[[str], Client], moderator: Moderator
) -> None:
    """Whichever of a ban and an add of the same user lands first, the user ends up out."""
    alice, carol = client("alice"), client("carol")
    for trial in range(15):
        cid = await alice.group(client(f"bob{trial}"))
        ban = moderator.moderation.BanMember(
            mpb.BanMemberRequest(conversation_id=cid, user_id="carol"), metadata=moderator.md
        )
        outcomes = await asyncio.gather(ban, alice.add(cid, carol), return_exceptions=True)
        assert not isinstance(outcomes[0], BaseException), outcomes[0]
        if isinstance(outcomes[1], grpc.aio.AioRpcError):
            assert outcomes[1].code() == DENIED
        assert "carol" not in await alice.members(cid), f"trial {trial}"
