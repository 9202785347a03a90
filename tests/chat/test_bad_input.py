"""SPEC "Limits" and "Errors": bad tokens and bad fields get the documented status, naming the
field; nothing is truncated or stored, and the server keeps serving afterwards."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from chatmesh.chat.v1 import access_service_pb2, access_service_pb2_grpc, types_pb2
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.events.v1 import event_service_pb2

from chatmesh_common.auth import auth_metadata, issue_service_token, issue_token
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS

from .support import SECRET, SERVICE_SECRET, ChatHarness, Client, expect_code

pytestmark = pytest.mark.timeout(20)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
# The largest uint64: a valid value on the wire for every seq field.
MAX_UINT64 = 2**64 - 1


@dataclass
class Seeded:
    """A group of alice and bob with three messages, and a way to prove nothing changed."""

    alice: Client
    bob: Client
    cid: str
    before: tuple[Any, ...]

    async def snapshot(self) -> tuple[Any, ...]:
        history = await self.alice.all_messages(self.cid)
        view = await self.bob.conversation(self.cid)
        return (tuple(history), view, await self.alice.members(self.cid))

    async def assert_unchanged_and_serving(self) -> None:
        """Stored data is as before the bad call, and the next good send gets the next seq."""
        assert await self.snapshot() == self.before
        sent = await self.alice.send(self.cid, "still serving")
        assert sent.message.seq == self.before[1].conversation.last_seq + 1


@pytest.fixture
async def seeded(client: Callable[[str], Client]) -> AsyncIterator[Seeded]:
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    for i in range(3):
        await alice.send(cid, f"m{i}")
    seeded = Seeded(alice, bob, cid, ())
    seeded.before = await seeded.snapshot()
    yield seeded


def send_request(cid: str, **fields: Any) -> pb.SendMessageRequest:
    values: dict[str, Any] = {"conversation_id": cid, "client_msg_id": "bad-1", "body": "hi"}
    values.update(fields)
    return pb.SendMessageRequest(**values)


async def send_with(who: Client, request: pb.SendMessageRequest) -> pb.SendMessageResponse:
    response: pb.SendMessageResponse = await who.chat.SendMessage(request, metadata=who.md)
    return response


# Tokens


def bad_metadata() -> dict[str, tuple[tuple[str, str], ...]]:
    now = time.time()
    return {
        "missing": (),
        "garbage": auth_metadata("not-a-jwt"),
        "wrong-secret": auth_metadata(issue_token("another-secret-of-at-least-32-bytes", "alice")),
        "expired": auth_metadata(issue_token(SECRET, "alice", ttl_s=60, now=now - 90)),
        "not-bearer": (("authorization", "Basic " + issue_token(SECRET, "alice")),),
    }


@pytest.mark.parametrize("token", list(bad_metadata()))
async def test_bad_token_is_unauthenticated(seeded: Seeded, token: str) -> None:
    """A missing, garbage, foreign, expired or non-bearer token gets UNAUTHENTICATED."""
    metadata = bad_metadata()[token]
    await expect_code(
        UNAUTHENTICATED,
        seeded.alice.chat.SendMessage(send_request(seeded.cid), metadata=metadata),
    )
    await expect_code(
        UNAUTHENTICATED,
        seeded.alice.chat.GetHistory(
            pb.GetHistoryRequest(conversation_id=seeded.cid), metadata=metadata
        ),
    )
    await seeded.assert_unchanged_and_serving()


@pytest.mark.parametrize("token", ["missing", "expired"])
async def test_bad_token_cannot_subscribe(seeded: Seeded, token: str) -> None:
    """SubscribeEvents with a missing or expired token ends with UNAUTHENTICATED."""
    call = seeded.alice.events.SubscribeEvents(
        event_service_pb2.SubscribeEventsRequest(), metadata=bad_metadata()[token]
    )
    await expect_code(UNAUTHENTICATED, call.read())
    await seeded.assert_unchanged_and_serving()


async def test_token_within_leeway_is_accepted(seeded: Seeded) -> None:
    """A token expired for less than the leeway (10 s) is still accepted."""
    metadata = auth_metadata(issue_token(SECRET, "alice", ttl_s=60, now=time.time() - 63))
    response = await seeded.alice.chat.GetHistory(
        pb.GetHistoryRequest(conversation_id=seeded.cid), metadata=metadata
    )
    assert len(response.messages) == 3


# Message bodies


async def test_body_over_16_kib_of_utf8_is_refused(seeded: Seeded) -> None:
    """6,000 '€' are 18,000 UTF-8 bytes (only 6,000 characters): INVALID_ARGUMENT naming body."""
    details = await expect_code(
        INVALID, send_with(seeded.alice, send_request(seeded.cid, body="€" * 6000))
    )
    assert "body" in details
    await seeded.assert_unchanged_and_serving()


async def test_body_one_byte_over_the_limit_is_refused(seeded: Seeded) -> None:
    """16,385 bytes is over the limit; nothing is truncated and stored."""
    details = await expect_code(
        INVALID, send_with(seeded.alice, send_request(seeded.cid, body="a" * 16_385))
    )
    assert "body" in details
    await seeded.assert_unchanged_and_serving()


async def test_body_of_exactly_16_kib_is_accepted(seeded: Seeded) -> None:
    """A body of exactly 16,384 UTF-8 bytes is stored whole."""
    body = "€" * 5461 + "a"  # 16,383 + 1 bytes
    assert len(body.encode()) == 16_384
    sent = await send_with(seeded.alice, send_request(seeded.cid, body=body))
    assert sent.message.body == body
    [stored] = (await seeded.alice.history(seeded.cid, limit=1)).messages
    assert stored.body == body


async def test_edit_over_16_kib_is_refused(seeded: Seeded) -> None:
    """An edit to a body over the limit is INVALID_ARGUMENT naming body."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.EditMessage(
            pb.EditMessageRequest(conversation_id=seeded.cid, message_seq=1, body="€" * 6000),
            metadata=seeded.alice.md,
        ),
    )
    assert "body" in details
    await seeded.assert_unchanged_and_serving()


async def test_empty_body_is_refused(seeded: Seeded) -> None:
    """A send with no body and no attachments is INVALID_ARGUMENT naming body."""
    details = await expect_code(INVALID, send_with(seeded.alice, send_request(seeded.cid, body="")))
    assert "body" in details
    await seeded.assert_unchanged_and_serving()


# Idempotency keys


@pytest.mark.parametrize("client_msg_id", ["", "k" * 129])
async def test_bad_client_msg_id_is_refused(seeded: Seeded, client_msg_id: str) -> None:
    """A missing client_msg_id, or one over 128 characters, is INVALID_ARGUMENT naming it."""
    details = await expect_code(
        INVALID,
        send_with(seeded.alice, send_request(seeded.cid, client_msg_id=client_msg_id)),
    )
    assert "client_msg_id" in details
    await seeded.assert_unchanged_and_serving()


async def test_client_msg_id_of_128_characters_is_accepted(seeded: Seeded) -> None:
    """A client_msg_id of exactly 128 characters is accepted and kept."""
    sent = await send_with(seeded.alice, send_request(seeded.cid, client_msg_id="k" * 128))
    assert sent.message.client_msg_id == "k" * 128


# Pages


async def test_history_limit_201_is_refused_not_truncated(seeded: Seeded) -> None:
    """A history page of 201 is INVALID_ARGUMENT naming limit, not a page of 200."""
    details = await expect_code(INVALID, seeded.alice.history(seeded.cid, limit=201))
    assert "limit" in details
    await seeded.assert_unchanged_and_serving()


async def test_history_limit_200_is_accepted(seeded: Seeded) -> None:
    """A history page of 200 is allowed."""
    assert len((await seeded.alice.history(seeded.cid, limit=200)).messages) == 3


async def test_history_default_page_is_50(seeded: Seeded) -> None:
    """Without a limit, a history page holds 50 messages and says there are more."""
    for i in range(60):
        await seeded.alice.send(seeded.cid, f"n{i}")
    page = await seeded.alice.history(seeded.cid)
    assert len(page.messages) == 50 and page.has_more


async def test_list_members_page_over_1000_is_refused(seeded: Seeded) -> None:
    """ListMembers with page_size 1001 is INVALID_ARGUMENT naming page_size."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.ListMembers(
            pb.ListMembersRequest(conversation_id=seeded.cid, page_size=1001),
            metadata=seeded.alice.md,
        ),
    )
    assert "page_size" in details


async def test_list_conversations_page_over_200_is_refused(seeded: Seeded) -> None:
    """ListConversations with page_size 201 is INVALID_ARGUMENT naming page_size."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.ListConversations(
            pb.ListConversationsRequest(page_size=201), metadata=seeded.alice.md
        ),
    )
    assert "page_size" in details


# Kinds and enums


async def test_system_kind_is_reserved_for_the_server(seeded: Seeded) -> None:
    """A client send of MESSAGE_KIND_SYSTEM is INVALID_ARGUMENT naming kind."""
    request = send_request(seeded.cid, kind=types_pb2.MESSAGE_KIND_SYSTEM)
    details = await expect_code(INVALID, send_with(seeded.alice, request))
    assert "kind" in details
    await seeded.assert_unchanged_and_serving()


async def test_unknown_message_kind_is_refused(seeded: Seeded) -> None:
    """A message kind outside the enum is INVALID_ARGUMENT naming kind."""
    details = await expect_code(INVALID, send_with(seeded.alice, send_request(seeded.cid, kind=99)))
    assert "kind" in details
    await seeded.assert_unchanged_and_serving()


@pytest.mark.parametrize("kind", [types_pb2.CONVERSATION_KIND_UNSPECIFIED, 42])
async def test_bad_conversation_kind_is_refused(seeded: Seeded, kind: int) -> None:
    """Creating a conversation of kind UNSPECIFIED or unknown is INVALID_ARGUMENT naming kind."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.CreateConversation(
            pb.CreateConversationRequest(
                kind=cast(types_pb2.ConversationKind, kind), member_ids=["bob"]
            ),
            metadata=seeded.alice.md,
        ),
    )
    assert "kind" in details
    listed = await seeded.alice.chat.ListConversations(
        pb.ListConversationsRequest(), metadata=seeded.alice.md
    )
    assert len(listed.conversations) == 1
    await seeded.assert_unchanged_and_serving()


@pytest.mark.parametrize("role", [types_pb2.ROLE_OWNER, 7, -1])
async def test_bad_role_for_added_members_is_refused(seeded: Seeded, role: int) -> None:
    """AddMembers with ROLE_OWNER or a role outside the enum is INVALID_ARGUMENT naming role."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.AddMembers(
            pb.AddMembersRequest(
                conversation_id=seeded.cid,
                user_ids=["carol"],
                role=cast(types_pb2.Role, role),
            ),
            metadata=seeded.alice.md,
        ),
    )
    assert "role" in details
    await seeded.assert_unchanged_and_serving()


@pytest.mark.parametrize("role", [types_pb2.ROLE_UNSPECIFIED, 9])
async def test_bad_role_change_is_refused(seeded: Seeded, role: int) -> None:
    """SetMemberRole to UNSPECIFIED or an unknown role is INVALID_ARGUMENT naming role."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.SetMemberRole(
            pb.SetMemberRoleRequest(
                conversation_id=seeded.cid, user_id="bob", role=cast(types_pb2.Role, role)
            ),
            metadata=seeded.alice.md,
        ),
    )
    assert "role" in details
    await seeded.assert_unchanged_and_serving()


# Other fields


async def test_direct_conversation_needs_exactly_one_peer(seeded: Seeded) -> None:
    """A direct conversation with no peer or two peers is INVALID_ARGUMENT naming member_ids."""
    for members in ([], ["bob", "carol"], ["alice"]):
        details = await expect_code(
            INVALID,
            seeded.alice.chat.CreateConversation(
                pb.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=members
                ),
                metadata=seeded.alice.md,
            ),
        )
        assert "member_ids" in details
    await seeded.assert_unchanged_and_serving()


async def test_too_long_conversation_id_is_refused(seeded: Seeded) -> None:
    """A conversation_id over 128 characters is INVALID_ARGUMENT naming conversation_id."""
    details = await expect_code(INVALID, send_with(seeded.alice, send_request("c" * 129)))
    assert "conversation_id" in details
    await seeded.assert_unchanged_and_serving()


async def test_too_many_attachments_are_refused(seeded: Seeded) -> None:
    """More than 10 attachments is INVALID_ARGUMENT naming attachments."""
    request = send_request(seeded.cid, attachments=[f"media-{i}" for i in range(11)])
    details = await expect_code(INVALID, send_with(seeded.alice, request))
    assert "attachments" in details
    await seeded.assert_unchanged_and_serving()


async def test_reply_to_a_missing_message_is_refused(seeded: Seeded) -> None:
    """reply_to_seq naming no message of the conversation is INVALID_ARGUMENT naming it."""
    details = await expect_code(
        INVALID, send_with(seeded.alice, send_request(seeded.cid, reply_to_seq=99))
    )
    assert "reply_to_seq" in details
    await seeded.assert_unchanged_and_serving()


async def test_bad_history_bounds_are_refused(seeded: Seeded) -> None:
    """after_seq not below before_seq - 1 is INVALID_ARGUMENT naming after_seq."""
    details = await expect_code(
        INVALID, seeded.alice.history(seeded.cid, before_seq=3, after_seq=3)
    )
    assert "after_seq" in details
    await seeded.assert_unchanged_and_serving()


async def test_bad_cursor_is_refused(seeded: Seeded) -> None:
    """A stream cursor without a conversation_id is INVALID_ARGUMENT naming cursors."""
    call = seeded.alice.events.SubscribeEvents(
        event_service_pb2.SubscribeEventsRequest(
            cursors=[types_pb2.ConversationCursor(conversation_id="", seq=1)]
        ),
        metadata=seeded.alice.md,
    )
    details = await expect_code(INVALID, call.read())
    assert "cursors" in details
    await seeded.assert_unchanged_and_serving()


async def test_garbage_page_token_is_refused(seeded: Seeded) -> None:
    """A page_token this service never issued is INVALID_ARGUMENT naming page_token."""
    details = await expect_code(
        INVALID,
        seeded.alice.chat.ListConversations(
            pb.ListConversationsRequest(page_token="garbage"), metadata=seeded.alice.md
        ),
    )
    assert "page_token" in details


# Seq fields are uint64: values past what the store keeps must be refused cleanly.


def huge_seq_calls(who: Client, cid: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "GetHistory.before_seq": lambda: who.history(cid, before_seq=MAX_UINT64),
        "GetHistory.after_seq": lambda: who.history(cid, after_seq=MAX_UINT64),
        "EditMessage.message_seq": lambda: who.chat.EditMessage(
            pb.EditMessageRequest(conversation_id=cid, message_seq=MAX_UINT64, body="x"),
            metadata=who.md,
        ),
        "DeleteMessage.message_seq": lambda: who.chat.DeleteMessage(
            pb.DeleteMessageRequest(conversation_id=cid, message_seq=MAX_UINT64),
            metadata=who.md,
        ),
        "SendMessage.reply_to_seq": lambda: send_with(
            who, send_request(cid, reply_to_seq=MAX_UINT64)
        ),
        "SubscribeEvents.cursors.seq": lambda: who.events.SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(
                cursors=[types_pb2.ConversationCursor(conversation_id=cid, seq=MAX_UINT64)]
            ),
            metadata=who.md,
        ).read(),
    }


@pytest.mark.parametrize(
    "field",
    [
        "GetHistory.before_seq",
        "GetHistory.after_seq",
        "EditMessage.message_seq",
        "DeleteMessage.message_seq",
        "SendMessage.reply_to_seq",
        "SubscribeEvents.cursors.seq",
    ],
)
async def test_huge_seq_gets_a_documented_status(seeded: Seeded, field: str) -> None:
    """A seq of 2**64-1 gets a documented status (never UNKNOWN), and the server keeps serving."""
    call = huge_seq_calls(seeded.alice, seeded.cid)[field]
    try:
        outcome = await call()
    except grpc.aio.AioRpcError as error:
        assert error.code() in (INVALID, grpc.StatusCode.NOT_FOUND), (
            f"{field}: {error.code().name}: {error.details()}"
        )
    else:
        # Accepting it is fine too: before a huge seq is the newest page; past one lies nothing.
        if field != "GetHistory.before_seq":
            assert not getattr(outcome, "messages", [])
    await seeded.assert_unchanged_and_serving()


async def test_server_keeps_serving_after_many_bad_calls(
    chat_server: ChatHarness, seeded: Seeded
) -> None:
    """A burst of refused calls leaves the server healthy and the data as it was."""
    for _ in range(20):
        await expect_code(INVALID, seeded.alice.history(seeded.cid, limit=201))
        await expect_code(
            UNAUTHENTICATED,
            seeded.alice.chat.SendMessage(send_request(seeded.cid), metadata=()),
        )
    await seeded.assert_unchanged_and_serving()


# AccessService (internal; called with a service token)


def access_stub(harness: ChatHarness) -> tuple[Any, tuple[tuple[str, str], ...]]:
    token = issue_service_token(SERVICE_SECRET, "presence", [SCOPE_CHAT_ACCESS])
    return access_service_pb2_grpc.AccessServiceStub(harness.channel), auth_metadata(token)


async def test_access_questions_must_name_their_user(chat_server: ChatHarness) -> None:
    """The user a question is about is required: INVALID_ARGUMENT naming the field."""
    stub, md = access_stub(chat_server)
    details = await expect_code(
        INVALID,
        stub.FilterPresenceAudience(
            access_service_pb2.FilterPresenceAudienceRequest(subject_user_ids=["bob"]), metadata=md
        ),
    )
    assert "viewer_user_id" in details
    details = await expect_code(
        INVALID,
        stub.CheckTypingAudience(
            access_service_pb2.CheckTypingAudienceRequest(conversation_id="c1"), metadata=md
        ),
    )
    assert "user_id" in details


async def test_too_many_access_subjects_are_refused(chat_server: ChatHarness) -> None:
    """More than 1,000 subjects in one question is INVALID_ARGUMENT, not a truncated answer."""
    stub, md = access_stub(chat_server)
    request = access_service_pb2.FilterPresenceAudienceRequest(
        viewer_user_id="alice", subject_user_ids=[f"u{i}" for i in range(1001)]
    )
    details = await expect_code(INVALID, stub.FilterPresenceAudience(request, metadata=md))
    assert "subject_user_ids" in details and "1000" in details


async def test_access_answers_are_about_the_named_user(
    chat_server: ChatHarness, seeded: Seeded
) -> None:
    """A service caller asks on behalf of the user named in the request, not of itself."""
    stub, md = access_stub(chat_server)
    visible = await stub.FilterPresenceAudience(
        access_service_pb2.FilterPresenceAudienceRequest(
            viewer_user_id="alice", subject_user_ids=["bob", "carol", "alice"]
        ),
        metadata=md,
    )
    assert list(visible.visible_user_ids) == ["bob", "alice"]
    audience = await stub.CheckTypingAudience(
        access_service_pb2.CheckTypingAudienceRequest(conversation_id=seeded.cid, user_id="bob"),
        metadata=md,
    )
    assert list(audience.recipient_ids) == ["alice"]
    await expect_code(
        grpc.StatusCode.PERMISSION_DENIED,
        stub.CheckTypingAudience(
            access_service_pb2.CheckTypingAudienceRequest(
                conversation_id=seeded.cid, user_id="carol"
            ),
            metadata=md,
        ),
    )
