"""Members report messages and users to the moderators: access checked, input bounded, and a
second report of the same target returns the first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from chatmesh_common.ids import new_id

from .moderation_support import Moderator, report_message
from .support import ChatHarness, Client, expect_code

pytestmark = pytest.mark.timeout(30)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
SPAM = types_pb2.REPORT_REASON_SPAM


async def open_reports(moderator: Moderator) -> list[types_pb2.Report]:
    response = await moderator.moderation.ListReports(
        mpb.ListReportsRequest(status=types_pb2.REPORT_STATUS_OPEN, page_size=200),
        metadata=moderator.md,
    )
    return list(response.reports)


async def test_member_reports_a_message_for_the_moderators(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """The report names the message, its sender and the reporter, and is open in the queue."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    sent = await alice.send(cid, "buy now")
    response = await report_message(bob, cid, sent.message.seq, "spam link")
    report = response.report
    assert not response.duplicate
    assert (report.reporter_id, report.user_id, report.conversation_id) == ("bob", "alice", cid)
    assert (report.message_seq, report.message_id) == (sent.message.seq, sent.message.message_id)
    assert (report.reason, report.details, report.status) == (
        SPAM,
        "spam link",
        types_pb2.REPORT_STATUS_OPEN,
    )
    assert [r.report_id for r in await open_reports(Moderator(chat_server))] == [report.report_id]


async def test_reporting_twice_returns_the_first_report(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """Same reporter, same message: one stored report, the second answer marked duplicate."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    sent = await alice.send(cid)
    first = await report_message(bob, cid, sent.message.seq)
    second = await report_message(bob, cid, sent.message.seq, "again")
    assert second.duplicate and second.report == first.report
    assert len(await open_reports(Moderator(chat_server))) == 1


@pytest.mark.parametrize("exists", [True, False])
async def test_non_member_cannot_report_a_message(
    client: Callable[[str], Client], exists: bool
) -> None:
    """PERMISSION_DENIED, the same whether or not the conversation exists."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob) if exists else new_id()
    if exists:
        await alice.send(cid)
    details = await expect_code(DENIED, report_message(mallory, cid, 1))
    assert details == f"not a member of conversation {cid}"


@pytest.mark.parametrize(
    ("request_fields", "named"),
    [
        ({"reason": types_pb2.REPORT_REASON_UNSPECIFIED}, "reason"),
        ({"details": "x" * 1001}, "details"),
        ({"message_seq": 0}, "message_seq"),
        ({"message_id": "not-this-message"}, "message_id"),
        ({"conversation_id": ""}, "conversation_id"),
    ],
)
async def test_bad_report_is_invalid_argument_naming_the_field(
    client: Callable[[str], Client], request_fields: dict[str, Any], named: str
) -> None:
    """Each bad field is refused with its name in the message."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid)
    fields: dict[str, Any] = {"conversation_id": cid, "message_seq": 1, "reason": SPAM}
    fields.update(request_fields)
    details = await expect_code(
        INVALID, bob.chat.ReportMessage(pb.ReportMessageRequest(**fields), metadata=bob.md)
    )
    assert named in details


async def test_reporting_an_unknown_or_own_message_is_refused(
    client: Callable[[str], Client],
) -> None:
    """A seq that is no message is NOT_FOUND; one's own message is INVALID_ARGUMENT."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid)
    await expect_code(grpc.StatusCode.NOT_FOUND, report_message(bob, cid, 99))
    assert "own message" in await expect_code(INVALID, report_message(alice, cid, 1))


async def test_report_user_checks_conversation_and_target(
    client: Callable[[str], Client],
) -> None:
    """A user report in a conversation needs the reporter's membership; self-reports are
    invalid; a second report of the same user is a duplicate."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    cid = await alice.group(bob)

    def report(who: Client, target: str, conversation_id: str = "") -> Any:
        return who.chat.ReportUser(
            pb.ReportUserRequest(user_id=target, conversation_id=conversation_id, reason=SPAM),
            metadata=who.md,
        )

    await expect_code(DENIED, report(mallory, "alice", cid))
    assert "user_id" in await expect_code(INVALID, report(bob, "bob"))
    first = await report(bob, "alice", cid)
    again = await report(bob, "alice", cid)
    elsewhere = await report(bob, "alice")
    assert again.duplicate and again.report.report_id == first.report.report_id
    assert not elsewhere.duplicate and elsewhere.report.report_id != first.report.report_id


async def test_reports_are_rate_limited(client: Callable[[str], Client]) -> None:
    """Past the burst, a reporter gets RESOURCE_EXHAUSTED with a retry-after."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for _ in range(11):
        await alice.send(cid)
    for seq in range(1, 11):
        await report_message(bob, cid, seq)
    details = await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, report_message(bob, cid, 11))
    assert "too many reports" in details


async def report_by_id(who: Client, conversation_id: str, message_id: str) -> Any:
    return await who.chat.ReportMessage(
        pb.ReportMessageRequest(
            conversation_id=conversation_id, message_id=message_id, reason=SPAM
        ),
        metadata=who.md,
    )


async def test_a_message_is_reported_by_its_message_id_alone(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """message_id without message_seq names the message: the report carries both; the same
    message reported again by its seq is the same report (duplicate)."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.send(cid, "first")
    sent = await alice.send(cid, "buy now")
    response = await report_by_id(bob, cid, sent.message.message_id)
    report = response.report
    assert not response.duplicate
    assert (report.message_seq, report.message_id, report.user_id) == (
        2,
        sent.message.message_id,
        "alice",
    )
    again = await report_message(bob, cid, 2)
    assert again.duplicate and again.report == report
    assert len(await open_reports(Moderator(chat_server))) == 1


async def test_a_message_id_of_no_message_here_is_not_found(
    client: Callable[[str], Client],
) -> None:
    """An unknown id and the id of another conversation's message are NOT_FOUND naming
    message_id; one's own message by id is INVALID_ARGUMENT."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    other = await alice.group(client("carol"), bob)
    mine = await alice.send(cid)
    elsewhere = await alice.send(other)
    for message_id in (new_id(), elsewhere.message.message_id):
        details = await expect_code(grpc.StatusCode.NOT_FOUND, report_by_id(bob, cid, message_id))
        assert "message_id" in details
    own = await expect_code(INVALID, report_by_id(alice, cid, mine.message.message_id))
    assert "own message" in own
