"""The pre-delivery screen of channel messages: blocked words and link domains are refused
before the durable write, so nothing is stored, acknowledged or delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from chat_service.screening import Blocklist
from chat_service.store.base import ConversationRecord, Kind

from .support import ChatHarness, expect_code

pytestmark = pytest.mark.timeout(30)

CHANNEL = ConversationRecord("c1", Kind.CHANNEL, "", "alice", 0.0, 0, 1, False, 0.0)


@pytest.mark.parametrize(
    ("body", "allowed"),
    [
        ("hello there", True),
        ("cheap SPAM here", False),
        ("a spammer is not spam-free", False),
        ("classy spammers", True),
        ("see https://www.evil.example/x", False),
        ("mail bob@evil.example", False),
        ("evil.example.org is someone else's", True),
        ("notevil.example", True),
        ("a buy now offer", False),
    ],
)
async def test_blocklist_matches_whole_words_and_domains(body: str, allowed: bool) -> None:
    """Words and phrases match whole, in any case; domains match with their subdomains."""
    blocklist = Blocklist(["spam", "Buy Now"], ["evil.example"])
    verdict = await blocklist.check(CHANNEL, "alice", body)
    assert verdict.allowed is allowed, verdict.reason


async def test_empty_blocklist_allows_everything() -> None:
    """The default (no words, no domains) is off."""
    blocklist = Blocklist()
    assert not blocklist.enabled
    assert (await blocklist.check(CHANNEL, "alice", "spam at evil.example")).allowed


@pytest.fixture
async def screened(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    harness = ChatHarness(
        tmp_path / "chat-data", blocked_words=("spam",), blocked_domains=("evil.example",)
    )
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def test_rejected_channel_send_stores_nothing(screened: ChatHarness) -> None:
    """INVALID_ARGUMENT naming the rule; the log stays as it was and the same key can be used
    again for an allowed body."""
    alice, bob = screened.client("alice"), screened.client("bob")
    cid = await alice.open_channel(bob)
    await alice.send(cid, "welcome")
    stream = await bob.subscribe((cid, 1))
    details = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, alice.send(cid, "visit evil.example now", "k1")
    )
    assert "blocked domain evil.example" in details
    details = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, alice.send(cid, "spam!", "k2"))
    assert "blocked word" in details
    assert (await alice.history(cid)).last_seq == 1
    sent = await alice.send(cid, "a fine message", "k1")
    assert (sent.message.seq, sent.duplicate) == (2, False)
    # The first event bob's stream gets is the allowed message: nothing rejected went out.
    event = await stream.next_event()
    assert event.seq == 2 and event.message_created.message.body == "a fine message"
    stream.close()


async def test_rejected_channel_edit_keeps_the_message(screened: ChatHarness) -> None:
    """An edit to a blocked body is refused and the message keeps its version and body."""
    alice, bob = screened.client("alice"), screened.client("bob")
    cid = await alice.open_channel(bob)
    await alice.send(cid, "fine")
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        alice.chat.EditMessage(
            pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="now spam"),
            metadata=alice.md,
        ),
    )
    message = (await alice.history(cid)).messages[0]
    assert (message.body, message.version) == ("fine", 1)


async def test_groups_are_not_screened(screened: ChatHarness) -> None:
    """The screen applies to channels; a group message with a blocked word is delivered."""
    alice, bob = screened.client("alice"), screened.client("bob")
    cid = await alice.group(bob)
    sent = await alice.send(cid, "spam talk among friends")
    assert sent.message.seq == 1
