"""Who gets a push for a new message, and what it says: over real chat_service, presence_service
and notify_service servers, with a recording provider in place of APNs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from chatmesh_common.metrics import GRPC_HANDLED

from .support import Harness, start_harness

pytestmark = pytest.mark.timeout(30)


async def test_offline_member_gets_one_push_and_online_member_none(harness: Harness) -> None:
    """An offline member gets exactly one push per message; an online one and the sender none."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(alice, "tok-alice")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    await harness.online(carol)
    conversation = await alice.group(bob, carol, title="team")
    sent = await harness.send(alice, conversation, "lunch?")
    pushes = await harness.provider.wait_for("tok-bob")
    await harness.settle()
    assert len(harness.provider.to("tok-bob")) == 1
    assert harness.provider.to("tok-carol") == []
    assert harness.provider.to("tok-alice") == []
    push = pushes[0]
    assert push.title == "team"
    assert push.body == "alice: lunch?"
    assert push.data["seq"] == str(sent.message.seq)
    assert push.data["conversation_id"] == conversation
    assert push.badge == 1
    assert push.collapse_key


@pytest.mark.parametrize(
    ("level", "title", "body", "has_sender"),
    [
        (pb.PREVIEW_LEVEL_FULL, "alice", "secret plans", True),
        (pb.PREVIEW_LEVEL_SENDER_ONLY, "alice", "New message", True),
        (pb.PREVIEW_LEVEL_GENERIC, "", "New message", False),
        (pb.PREVIEW_LEVEL_ID_ONLY, "", "", False),
    ],
)
async def test_preview_follows_the_privacy_level(
    harness: Harness, level: pb.PreviewLevel, title: str, body: str, has_sender: bool
) -> None:
    """The push shows what the recipient's preview level allows; ids always travel in data."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(preview=level), metadata=bob.md
    )
    conversation = await alice.direct(bob)
    sent = await harness.send(alice, conversation, "secret plans")
    (push,) = await harness.provider.wait_for("tok-bob")
    assert (push.title, push.body) == (title, body)
    assert ("sender_id" in push.data) == has_sender
    assert push.data["message_id"] == sent.message.message_id
    assert "secret" not in str(dict(push.data))


async def test_muted_conversation_gets_no_push_even_when_mentioned(harness: Harness) -> None:
    """A mute (forever, until a future time, or chat's own mute) wins over a mention."""
    alice, bob, carol, dave = (harness.client(u) for u in ("alice", "bob", "carol", "dave"))
    for who in (bob, carol, dave):
        await harness.register(who, f"tok-{who.user_id}")
    conversation = await alice.group(bob, carol, dave)
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(
            conversations=[
                pb.ConversationSettings(conversation_id=conversation, muted_forever=True)
            ]
        ),
        metadata=bob.md,
    )
    until = pb.ConversationSettings(conversation_id=conversation)
    until.muted_until.GetCurrentTime()
    until.muted_until.seconds += 3600
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(conversations=[until]), metadata=carol.md
    )
    await harness.send(alice, conversation, "hi all", mentions=["bob", "carol", "dave"])
    await harness.provider.wait_for("tok-dave")
    await harness.settle()
    assert harness.provider.to("tok-bob") == []
    assert harness.provider.to("tok-carol") == []


async def test_chat_side_mute_stops_pushes(harness: Harness) -> None:
    """UpdateMemberSettings(muted) in chat_service mutes pushes too."""
    from chatmesh.chat.v1 import chat_service_pb2 as chat_pb

    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    conversation = await alice.group(bob, carol)
    await bob.chat.UpdateMemberSettings(
        chat_pb.UpdateMemberSettingsRequest(conversation_id=conversation, muted=True),
        metadata=bob.md,
    )
    await harness.send(alice, conversation, "hello")
    await harness.provider.wait_for("tok-carol")
    await harness.settle()
    assert harness.provider.to("tok-bob") == []


async def test_blocked_sender_does_not_push(harness: Harness) -> None:
    """A member who blocked the sender gets no push from them; others still do."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    conversation = await alice.group(bob, carol)
    await bob.block(alice)
    await harness.send(alice, conversation, "hello")
    await harness.provider.wait_for("tok-carol")
    await harness.settle()
    assert harness.provider.to("tok-bob") == []


async def test_channels_default_to_mentions_only_and_none_pushes_nothing(
    harness: Harness,
) -> None:
    """A channel message without a mention pushes nobody by default; level NONE silences a
    group; level ALL in a channel pushes everything."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    channel = await alice.open_channel(bob, carol)
    group = await alice.group(bob, carol)
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(
            conversations=[
                pb.ConversationSettings(conversation_id=channel, level=pb.NOTIFY_LEVEL_ALL)
            ]
        ),
        metadata=bob.md,
    )
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(
            conversations=[
                pb.ConversationSettings(conversation_id=group, level=pb.NOTIFY_LEVEL_NONE)
            ]
        ),
        metadata=carol.md,
    )
    await harness.send(alice, channel, "for everyone")
    await harness.send(alice, group, "group news")
    pushes = await harness.provider.wait_for("tok-bob", 2)
    await harness.settle()
    assert sorted(p.data["conversation_id"] for p in pushes) == sorted([channel, group])
    assert harness.provider.to("tok-carol") == []


async def test_mention_pushes_in_a_mentions_only_conversation(harness: Harness) -> None:
    """In a channel (mentions only by default) a mention pushes the mentioned member only."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    channel = await alice.open_channel(bob, carol)
    await harness.send(alice, channel, "bob, look", mentions=["bob"])
    await asyncio.wait_for(harness.provider.wait_for("tok-bob"), 3)
    await harness.settle()
    assert harness.provider.to("tok-carol") == []


async def test_badge_is_the_unread_total(harness: Harness) -> None:
    """The badge counts unread messages over all the recipient's conversations."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    direct = await alice.direct(bob)
    group = await alice.group(bob)
    await harness.send(alice, direct, "one")
    await harness.provider.wait_for("tok-bob", 1)
    await harness.send(alice, group, "two")
    await harness.provider.wait_for("tok-bob", 2)
    await harness.send(alice, direct, "three")
    pushes = await harness.provider.wait_for("tok-bob", 3)
    assert [p.badge for p in pushes] == [1, 2, 3]


async def test_reading_clears_the_other_devices(harness: Harness) -> None:
    """A read sends a silent clear with the new badge to the reader's devices."""
    from chatmesh.chat.v1 import chat_service_pb2 as chat_pb

    alice, bob = harness.client("alice"), harness.client("bob")
    phone, tablet = harness.client("bob", "phone"), harness.client("bob", "tablet")
    await harness.register(phone, "tok-phone")
    await harness.register(tablet, "tok-tablet")
    conversation = await alice.direct(bob)
    other = await alice.group(bob)
    await harness.send(alice, other, "still unread")
    sent = await harness.send(alice, conversation, "read me")
    await harness.provider.wait_for("tok-phone", 2)
    await harness.provider.wait_for("tok-tablet", 2)
    await phone.chat.MarkRead(
        chat_pb.MarkReadRequest(conversation_id=conversation, seq=sent.message.seq),
        metadata=phone.md,
    )
    (clear,) = await harness.provider.wait_for("tok-tablet", 1, kind="clear")
    assert clear.silent
    assert clear.badge == 1
    assert clear.data["conversation_id"] == conversation
    assert clear.collapse_key == harness.provider.to("tok-tablet")[-1].collapse_key


async def test_edit_does_not_push_and_delete_cancels_a_queued_push(tmp_path: Path) -> None:
    """An edit pushes nothing; deleting a message whose push still waits cancels it."""
    async for harness in start_harness(tmp_path, device_interval_s=1.5):
        from chatmesh.chat.v1 import chat_service_pb2 as chat_pb

        alice, bob = harness.client("alice"), harness.client("bob")
        await harness.register(bob, "tok-bob")
        conversation = await alice.direct(bob)
        await harness.send(alice, conversation, "first")
        await harness.provider.wait_for("tok-bob", 1)
        # The device interval holds the next push back: delete it meanwhile.
        second = await harness.send(alice, conversation, "oops")
        await alice.chat.EditMessage(
            chat_pb.EditMessageRequest(conversation_id=conversation, message_seq=1, body="first!"),
            metadata=alice.md,
        )
        await alice.chat.DeleteMessage(
            chat_pb.DeleteMessageRequest(
                conversation_id=conversation, message_seq=second.message.seq
            ),
            metadata=alice.md,
        )
        await asyncio.sleep(2.0)
        assert [p.body for p in harness.provider.to("tok-bob")] == ["first"]


async def test_a_redelivered_event_pushes_nothing_more(harness: Harness) -> None:
    """Handling the same MessageCreated again (the bus redelivers) queues no second push."""
    from chatmesh.events.v1 import events_pb2

    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    conversation = await alice.direct(bob)
    sent = await harness.send(alice, conversation, "once")
    await harness.provider.wait_for("tok-bob")
    event = events_pb2.ConversationEvent(
        conversation_id=conversation,
        seq=sent.message.seq,
        message_created=events_pb2.MessageCreated(message=sent.message),
    )
    assert await harness.notify.component.consumer.handle(event) == 0
    await harness.settle()
    assert len(harness.provider.to("tok-bob")) == 1


def _handled(method: str) -> float:
    """Calls of a gRPC method (by its name) the servers of this process have handled."""
    return sum(
        sample.value
        for metric in GRPC_HANDLED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["method"].endswith(f"/{method}")
    )


async def test_members_without_a_push_target_cost_no_presence_or_unread_lookup(
    harness: Harness,
) -> None:
    """A message to members none of whom registered a target asks neither presence nor the
    unread totals; the next one, to a member with a target, asks each once."""
    alice, bob = harness.client("alice"), harness.client("bob")
    carol, dave = harness.client("carol"), harness.client("dave")
    await harness.register(bob, "tok-bob")
    quiet = await alice.group(carol, dave, title="no targets")
    direct = await alice.direct(bob)
    online_before, unread_before = _handled("GetOnlineUsers"), _handled("GetUnreadTotals")
    await harness.send(alice, quiet, "nobody to push")
    await harness.send(alice, direct, "bob gets this")
    # One consumer lane handles events in log order: bob's push means both were handled.
    await harness.provider.wait_for("tok-bob")
    assert _handled("GetOnlineUsers") - online_before == 1
    assert _handled("GetUnreadTotals") - unread_before == 1
