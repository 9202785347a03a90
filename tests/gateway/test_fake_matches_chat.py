"""The test fake of chat_service (tests/gateway/fake_chat.py) checked against the real service.

Every scenario runs twice, once against the fake and once against chat_service itself, through
the same gateway calls and gRPC requests, and asserts the same observable result. A behaviour the
gateway tests rely on that the fake stops sharing with the real service fails here.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2, chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc
from chatmesh.gateway.v1 import gateway_pb2

from tests.gateway.client import GatewayClient, ServerError
from tests.gateway.conftest import SECRET, Chat, GatewayFactory, token
from tests.gateway.fake_chat import FakeChat

pytestmark = pytest.mark.timeout(60)


class Peer:
    """A chat service the gateway talks to, with the one thing set up differently: conversations
    (the fake has no CreateConversation, so its members are written directly)."""

    def __init__(self, target: str, fake: FakeChat | None) -> None:
        self.target = target
        self._fake = fake
        self._ids = itertools.count(1)

    async def conversation(self, owner: str, *members: str) -> str:
        """A group of `owner` and `members`, with no message yet."""
        if self._fake is not None:
            conversation_id = f"c{next(self._ids)}"
            self._fake.add_conversation(conversation_id, owner, *members)
            return conversation_id
        async with grpc.aio.insecure_channel(self.target) as channel:
            answer = await chat_service_pb2_grpc.ChatServiceStub(channel).CreateConversation(
                chat_service_pb2.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_GROUP, title="t", member_ids=list(members)
                ),
                metadata=_auth(owner),
            )
        return str(answer.conversation.conversation.conversation_id)


def _auth(user_id: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token(user_id)}"),)


@pytest.fixture(params=["fake", "real"])
async def peer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Peer]:
    """The fake, then the real chat_service."""
    if request.param == "fake":
        fake = FakeChat(SECRET)
        await fake.start()
        try:
            yield Peer(fake.target, fake)
        finally:
            await fake.stop(0)
        return
    chat = Chat(tmp_path)
    await chat.start()
    try:
        yield Peer(chat.target, None)
    finally:
        await chat.stop()


async def _connect(peer: Peer, factory: GatewayFactory, user_id: str) -> GatewayClient:
    gateway = await factory(peer.target)
    return await GatewayClient.connect(gateway.url, token(user_id))


async def _send(client: GatewayClient, cid: str, body: str, key: str) -> gateway_pb2.ServerFrame:
    return await client.call("send_message", conversation_id=cid, client_msg_id=key, body=body)


async def test_sends_take_consecutive_seqs_and_reach_the_other_member_live(
    peer: Peer, gateway_factory: GatewayFactory
) -> None:
    """The ack carries seq 1, 2, ... and the message; the other member's socket gets each."""
    cid = await peer.conversation("alice", "bob")
    alice = await _connect(peer, gateway_factory, "alice")
    bob = await _connect(peer, gateway_factory, "bob")
    await bob.resume({})  # answered once bob's stream is live at the service
    acks = [(await _send(alice, cid, f"m{n}", f"k{n}")).send_message.message for n in (1, 2)]
    assert [(m.seq, m.sender_id, m.body, m.client_msg_id) for m in acks] == [
        (1, "alice", "m1", "k1"),
        (2, "alice", "m2", "k2"),
    ]
    got = [e for e in await bob.events(2) if e.seq]
    assert [(e.conversation_id, e.seq, e.message_created.message.body) for e in got] == [
        (cid, 1, "m1"),
        (cid, 2, "m2"),
    ]


async def test_a_retried_send_returns_the_original_message(
    peer: Peer, gateway_factory: GatewayFactory
) -> None:
    """The same client_msg_id again: the same seq and message id, nothing new stored."""
    cid = await peer.conversation("alice", "bob")
    alice = await _connect(peer, gateway_factory, "alice")
    first = (await _send(alice, cid, "once", "same")).send_message.message
    again = (await _send(alice, cid, "once", "same")).send_message.message
    assert (again.seq, again.message_id) == (first.seq, first.message_id)
    history = await alice.call("get_history", conversation_id=cid)
    assert [m.seq for m in history.get_history.messages] == [first.seq]


async def test_a_non_member_is_refused_send_and_history(
    peer: Peer, gateway_factory: GatewayFactory
) -> None:
    """PERMISSION_DENIED for a conversation the caller is not in."""
    cid = await peer.conversation("alice", "bob")
    mallory = await _connect(peer, gateway_factory, "mallory")
    for call in (
        mallory.call("send_message", conversation_id=cid, client_msg_id="x", body="let me in"),
        mallory.call("get_history", conversation_id=cid),
    ):
        with pytest.raises(ServerError) as caught:
            await call
        assert caught.value.code == gateway_pb2.ERROR_CODE_PERMISSION_DENIED


async def test_history_is_newest_first_with_the_last_seq(
    peer: Peer, gateway_factory: GatewayFactory
) -> None:
    """GetHistory with no cursor: the messages newest first and the conversation's last seq."""
    cid = await peer.conversation("alice", "bob")
    alice = await _connect(peer, gateway_factory, "alice")
    for n in range(3):
        await _send(alice, cid, f"m{n + 1}", f"k{n}")
    history = (await alice.call("get_history", conversation_id=cid)).get_history
    assert [m.body for m in history.messages] == ["m3", "m2", "m1"]
    assert history.last_seq == 3


async def test_resume_replays_after_the_cursor_and_revokes_foreign_conversations(
    peer: Peer, gateway_factory: GatewayFactory
) -> None:
    """The replay after each cursor, then `resumed` naming the conversations not readable."""
    cid = await peer.conversation("alice", "bob")
    foreign = await peer.conversation("bob", "carol")
    alice = await _connect(peer, gateway_factory, "alice")
    for n in range(3):
        await _send(alice, cid, f"m{n + 1}", f"k{n}")
    bob = await _connect(peer, gateway_factory, "bob")
    carol = await _connect(peer, gateway_factory, "carol")
    resumed = await carol.resume({cid: 1, foreign: 0})
    assert list(resumed.revoked_conversation_ids) == [cid]
    resumed = await bob.resume({cid: 1, foreign: 0})
    assert list(resumed.revoked_conversation_ids) == []
    assert [(e.conversation_id, e.seq) for e in bob.pending_events() if e.seq] == [
        (cid, 2),
        (cid, 3),
    ]


async def test_a_stream_reports_the_baseline_of_every_other_conversation(peer: Peer) -> None:
    """SubscribeEvents: caught_up names each conversation without a cursor at its last seq."""
    quiet = await peer.conversation("alice", "bob")
    busy = await peer.conversation("alice", "bob")
    named = await peer.conversation("alice", "bob")
    async with grpc.aio.insecure_channel(peer.target) as channel:
        chat = chat_service_pb2_grpc.ChatServiceStub(channel)
        for n in range(2):
            await chat.SendMessage(
                chat_service_pb2.SendMessageRequest(
                    conversation_id=busy, client_msg_id=f"k{n}", body="b"
                ),
                metadata=_auth("bob"),
            )
        events = event_service_pb2_grpc.EventServiceStub(channel)
        request = event_service_pb2.SubscribeEventsRequest(device_id="phone")
        request.cursors.add(conversation_id=named, seq=0)
        call = events.SubscribeEvents(request, metadata=_auth("alice"))
        first = await call.read()
        call.cancel()
    assert isinstance(first, event_service_pb2.SubscribeEventsResponse)
    assert first.WhichOneof("item") == "caught_up"
    baselines = {b.conversation_id: b.seq for b in first.caught_up.baselines}
    assert baselines == {quiet: 0, busy: 2}
