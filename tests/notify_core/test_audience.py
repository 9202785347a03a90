"""The questions notify_service asks with its service token: chat_service's GetPushAudience and
GetUnreadTotals, presence_service's GetOnlineUsers (invisible users count as online)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import access_service_pb2_grpc
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.presence.v1 import presence_service_pb2 as presence_pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from notify_service.access import GrpcNotifyAccess, NotFound, notify_credential
from tests.chat.support import SERVICE_SECRET

from .support import Harness

pytestmark = pytest.mark.timeout(30)


def _access(harness: Harness) -> GrpcNotifyAccess:
    return GrpcNotifyAccess(
        notify_credential(SERVICE_SECRET), harness.channel, harness.presence_channel
    )


async def test_push_audience_names_blocks_mutes_and_leaves_out_the_sender(
    harness: Harness,
) -> None:
    """Every member but the sender, with blocked-the-sender and chat-muted flags."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    conversation = await alice.group(bob, carol, title="t")
    await bob.block(alice)
    await carol.chat.UpdateMemberSettings(
        chat_pb.UpdateMemberSettingsRequest(conversation_id=conversation, muted=True),
        metadata=carol.md,
    )
    sent = await harness.send(alice, conversation, "hi")
    audience = await _access(harness).push_audience(conversation, sent.message.seq)
    assert audience.message.body == "hi"
    assert audience.conversation.title == "t"
    assert {(m.user_id, m.blocked_sender, m.muted) for m in audience.members} == {
        ("bob", True, False), ("carol", False, True),
    }  # fmt: skip
    with pytest.raises(NotFound):
        await _access(harness).push_audience(conversation, 99)


async def test_unread_totals_sum_every_conversation(harness: Harness) -> None:
    """The unread total counts others' messages after the read marker, over all conversations."""
    alice, bob = harness.client("alice"), harness.client("bob")
    direct = await alice.direct(bob)
    group = await alice.group(bob)
    await harness.send(alice, direct, "1")
    await harness.send(alice, group, "2")
    await harness.send(bob, group, "mine")
    totals = await _access(harness).unread_totals(["alice", "bob", "nobody"])
    assert totals == {"alice": 1, "bob": 1, "nobody": 0}


async def test_online_users_include_invisible_ones(harness: Harness) -> None:
    """GetOnlineUsers tells whether a device is online, whatever the status shown to others."""
    bob, carol = harness.client("bob"), harness.client("carol")
    await harness.online(bob)
    await harness.online(carol)
    stub: Any = presence_service_pb2_grpc.PresenceServiceStub(harness.presence_channel)
    await stub.SetStatus(
        presence_pb.SetStatusRequest(status=presence_pb.USER_STATUS_INVISIBLE), metadata=carol.md
    )
    assert await _access(harness).online_users(["bob", "carol", "dave"]) == {"bob", "carol"}
    await harness.offline(bob)
    assert await _access(harness).online_users(["bob", "carol"]) == {"carol"}


async def test_user_tokens_cannot_ask(harness: Harness) -> None:
    """The audience and online questions refuse user tokens."""
    bob = harness.client("bob")
    access: Any = access_service_pb2_grpc.AccessServiceStub(harness.channel)
    presence: Any = presence_service_pb2_grpc.PresenceServiceStub(harness.presence_channel)
    for call in (
        access.GetPushAudience(
            pb.GetPushAudienceRequest(conversation_id="c", seq=1), metadata=bob.md
        ),
        access.GetUnreadTotals(pb.GetUnreadTotalsRequest(user_ids=["bob"]), metadata=bob.md),
        presence.GetOnlineUsers(presence_pb.GetOnlineUsersRequest(user_ids=["x"]), metadata=bob.md),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
