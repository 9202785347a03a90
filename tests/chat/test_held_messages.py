"""Channel messages the screen holds for review: stored aside (no seq, nothing delivered),
listed for moderators, released into the log with the next seq, or dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from .moderation_support import Moderator
from .support import ChatHarness, expect_code

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def holding(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    harness = ChatHarness(tmp_path / "chat-data", held_words=("review me",))
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


async def held_ids(moderator: Moderator) -> list[str]:
    response = await moderator.moderation.ListHeld(mpb.ListHeldRequest(), metadata=moderator.md)
    return [h.message.message_id for h in response.held]


async def test_held_message_waits_then_is_released_with_the_next_seq(
    holding: ChatHarness,
) -> None:
    """The sender is told `held` (seq 0); members get nothing and history is unchanged; the
    moderator sees it with the rule; released, it takes the next seq, reaches the members'
    streams, and the sender's retry returns it."""
    alice, bob, moderator = holding.client("alice"), holding.client("bob"), Moderator(holding)
    cid = await alice.open_channel(bob)
    await alice.send(cid, "welcome")
    stream = await bob.subscribe((cid, 1))
    sent = await alice.send(cid, "please REVIEW ME first", "k1")
    assert sent.held and not sent.duplicate and sent.message.seq == 0
    again = await alice.send(cid, "please REVIEW ME first", "k1")
    assert again.held and again.duplicate and again.message.message_id == sent.message.message_id
    assert (await alice.history(cid)).last_seq == 1
    listed = await moderator.moderation.ListHeld(mpb.ListHeldRequest(), metadata=moderator.md)
    [held] = [h for h in listed.held if h.message.message_id == sent.message.message_id]
    assert "held word 'REVIEW ME'" in held.reason and held.message.conversation_id == cid
    await alice.send(cid, "in between")
    released = await moderator.moderation.ReleaseHeld(
        mpb.ReleaseHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
    )
    assert released.message.seq == 3 and released.message.body == "please REVIEW ME first"
    seen = [await stream.next_event() for _ in range(2)]
    assert [e.seq for e in seen] == [2, 3]
    assert seen[1].message_created.message.message_id == sent.message.message_id
    retry = await alice.send(cid, "please REVIEW ME first", "k1")
    assert (retry.held, retry.duplicate, retry.message.seq) == (False, True, 3)
    again_released = await moderator.moderation.ReleaseHeld(
        mpb.ReleaseHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
    )
    assert again_released.message.seq == 3
    assert sent.message.message_id not in await held_ids(moderator)
    assert (await alice.history(cid)).last_seq == 3
    stream.close()


async def test_dropped_message_is_never_stored_and_its_retry_is_refused(
    holding: ChatHarness,
) -> None:
    """Dropped: not in the list, not in the log; the sender's retry is INVALID_ARGUMENT;
    releasing it then is FAILED_PRECONDITION; an unknown id is NOT_FOUND."""
    alice, bob, moderator = holding.client("alice"), holding.client("bob"), Moderator(holding)
    cid = await alice.open_channel(bob)
    sent = await alice.send(cid, "review me", "k1")
    assert sent.held
    await moderator.moderation.DropHeld(
        mpb.DropHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
    )
    assert sent.message.message_id not in await held_ids(moderator)
    details = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, alice.send(cid, "review me", "k1")
    )
    assert "dropped after review" in details
    await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        moderator.moderation.ReleaseHeld(
            mpb.ReleaseHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
        ),
    )
    await expect_code(
        grpc.StatusCode.NOT_FOUND,
        moderator.moderation.DropHeld(
            mpb.DropHeldRequest(message_id="no-such-message"), metadata=moderator.md
        ),
    )
    assert (await alice.history(cid)).last_seq == 0


async def test_an_edit_to_a_held_word_is_refused(holding: ChatHarness) -> None:
    """Edits are not held: an edit the screen would hold is INVALID_ARGUMENT."""
    alice, bob = holding.client("alice"), holding.client("bob")
    cid = await alice.open_channel(bob)
    await alice.send(cid, "fine")
    details = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        alice.chat.EditMessage(
            pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="review me"),
            metadata=alice.md,
        ),
    )
    assert "not held for review" in details


async def test_a_held_message_of_a_sender_suspended_since_is_not_released(
    holding: ChatHarness,
) -> None:
    """ReleaseHeld is FAILED_PRECONDITION naming the suspension, the message stays pending,
    and DropHeld still discards it."""
    alice, bob, moderator = holding.client("alice"), holding.client("bob"), Moderator(holding)
    cid = await alice.open_channel(bob)
    sent = await alice.send(cid, "review me")
    await moderator.moderation.SuspendUser(
        mpb.SuspendUserRequest(user_id="alice", reason="spam wave"), metadata=moderator.md
    )
    details = await expect_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        moderator.moderation.ReleaseHeld(
            mpb.ReleaseHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
        ),
    )
    assert "suspended" in details and "drop it" in details
    assert sent.message.message_id in await held_ids(moderator)
    await moderator.moderation.DropHeld(
        mpb.DropHeldRequest(message_id=sent.message.message_id), metadata=moderator.md
    )
    assert (await bob.history(cid)).last_seq == 0
