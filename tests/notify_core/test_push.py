"""Who gets a push for a new message, and what it says: over real chat_service, presence_service
and notify_service servers, with a recording provider in place of APNs."""

from __future__ import annotations

import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from .support import Harness

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
