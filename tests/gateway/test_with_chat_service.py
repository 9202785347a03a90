"""The gateway in front of the real chat_service (SQLite in a temp dir), both on free ports.

These check that the edge and the service agree on the contract: token forwarding, answers and
errors, live fanout, resume with no gap, idempotent retries and a chat_service restart.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from chatmesh.chat.v1 import types_pb2
from chatmesh.gateway.v1 import gateway_pb2

from gateway_ws.server import Gateway
from tests.gateway.client import GatewayClient, ServerError
from tests.gateway.conftest import Chat, GatewayFactory, token

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def edge(chat: Chat, gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory(chat.target)


async def _send(client: GatewayClient, conversation_id: str, body: str, key: str = "") -> int:
    answer = await client.call(
        "send_message",
        conversation_id=conversation_id,
        client_msg_id=key or client.next_request_id(),
        body=body,
    )
    return int(answer.send_message.message.seq)


async def _next_message(client: GatewayClient) -> tuple[int, str]:
    """The next event that is a new message: (seq, body); membership events are skipped."""
    while True:
        event = await client.next_event(timeout_s=10)
        if event.HasField("message_created"):
            return int(event.seq), str(event.message_created.message.body)


async def test_a_message_reaches_the_other_member_live(edge: Gateway) -> None:
    """alice sends through the gateway; bob's socket gets the event; alice gets the ack."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    bob = await GatewayClient.connect(edge.url, token("bob"), binary=True)
    await bob.ping()  # starts bob's live stream
    conversation_id = await alice.create_group("bob")
    seq = await _send(alice, conversation_id, "hello bob")
    assert await _next_message(bob) == (seq, "hello bob")
    await alice.close()
    await bob.close()


async def test_the_senders_other_device_gets_the_event(edge: Gateway) -> None:
    """The sending device gets the ack, the sender's other device the event."""
    phone = await GatewayClient.connect(edge.url, token("alice", "phone"))
    laptop = await GatewayClient.connect(edge.url, token("alice", "laptop"))
    await laptop.ping()
    conversation_id = await phone.create_group("bob")
    seq = await _send(phone, conversation_id, "from my phone")
    assert await _next_message(laptop) == (seq, "from my phone")
    await phone.close()
    await laptop.close()


async def test_a_reconnecting_device_resumes_with_no_gap(edge: Gateway) -> None:
    """Messages sent while bob is away arrive on resume, then `resumed`, then live ones."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    bob = await GatewayClient.connect(edge.url, token("bob"))
    await bob.ping()
    conversation_id = await alice.create_group("bob")
    first = await _send(alice, conversation_id, "m1")
    assert (await _next_message(bob))[0] == first
    await bob.close()
    missed = [await _send(alice, conversation_id, f"away {n}") for n in range(3)]
    bob = await GatewayClient.connect(edge.url, token("bob"), resume={conversation_id: first})
    replayed = [e.seq for e in bob.pending_events() if e.HasField("message_created")]
    assert replayed == missed
    live = await _send(alice, conversation_id, "live")
    assert (await _next_message(bob))[0] == live
    await alice.close()
    await bob.close()


async def test_resume_reports_conversations_the_user_left(edge: Gateway) -> None:
    """A cursor for a conversation the user is no longer in comes back as revoked."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    conversation_id = await alice.create_group("bob")
    bob = await GatewayClient.connect(edge.url, token("bob"))
    await bob.call("leave_conversation", conversation_id=conversation_id)
    resumed = await bob.resume({conversation_id: 0})
    assert list(resumed.revoked_conversation_ids) == [conversation_id]
    await alice.close()
    await bob.close()


async def test_service_errors_arrive_as_error_frames(edge: Gateway) -> None:
    """PERMISSION_DENIED for a stranger, INVALID_ARGUMENT for over-limit requests."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    conversation_id = await alice.create_group("bob")
    mallory = await GatewayClient.connect(edge.url, token("mallory"))
    with pytest.raises(ServerError) as caught:
        await _send(mallory, conversation_id, "let me in")
    assert caught.value.code == gateway_pb2.ERROR_CODE_PERMISSION_DENIED
    with pytest.raises(ServerError) as caught:
        await alice.call("get_history", conversation_id=conversation_id, limit=201)
    assert caught.value.code == gateway_pb2.ERROR_CODE_INVALID_ARGUMENT
    with pytest.raises(ServerError) as caught:
        await _send(alice, conversation_id, "x" * (16 * 1024 + 1))
    assert caught.value.code == gateway_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert (await alice.ping()).WhichOneof("frame") == "pong"
    await alice.close()
    await mallory.close()


async def test_a_retried_send_returns_the_original_message(edge: Gateway) -> None:
    """Same client_msg_id: same seq and message_id, duplicate=true."""
    alice = await GatewayClient.connect(edge.url, token("alice"), binary=True)
    conversation_id = await alice.create_group("bob")
    fields: dict[str, Any] = {
        "conversation_id": conversation_id,
        "client_msg_id": "k1",
        "body": "once",
    }
    first = await alice.call("send_message", **fields)
    again = await alice.call("send_message", **fields)
    assert again.send_message.duplicate
    assert again.send_message.message.seq == first.send_message.message.seq
    assert again.send_message.message.message_id == first.send_message.message.message_id
    history = await alice.call("get_history", conversation_id=conversation_id)
    bodies = [m.body for m in history.get_history.messages if m.kind == types_pb2.MESSAGE_KIND_TEXT]
    assert bodies == ["once"]
    await alice.close()


async def test_a_chat_service_restart_does_not_lose_events(chat: Chat, edge: Gateway) -> None:
    """chat_service restarts on the same port: the gateway resubscribes; nothing is missed."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    bob = await GatewayClient.connect(edge.url, token("bob"))
    conversation_id = await alice.create_group("bob")
    await bob.resume({conversation_id: 0})
    bob.pending_events()
    first = await _send(alice, conversation_id, "before")
    assert (await _next_message(bob))[0] == first
    await chat.stop()
    await chat.start()
    # The gateway's stream broke with the restart; sends go through as soon as it is back.
    sent = []
    for n in range(3):
        for _attempt in range(50):
            try:
                sent.append(await _send(alice, conversation_id, f"after {n}", key=f"after-{n}"))
                break
            except ServerError as exc:
                assert exc.code == gateway_pb2.ERROR_CODE_UNAVAILABLE
                await asyncio.sleep(0.1)
    got = [(await _next_message(bob))[0] for _ in sent]
    assert got == sent
    await alice.close()
    await bob.close()


async def test_a_restart_loses_nothing_in_conversations_a_live_device_never_heard_from(
    chat: Chat, edge: Gateway
) -> None:
    """A live-only device misses nothing sent during a stream break, even where it saw no event."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    conversation_id = await alice.create_group("bob")
    quiet = await _send(alice, conversation_id, "before bob connects")
    bob = await GatewayClient.connect(edge.url, token("bob"))
    # No cursors: bob's stream is live-only, he has seen nothing of the conversation. `resumed`
    # comes after the stream's caught_up, so the gateway knows the baselines before the break.
    await bob.resume({})
    assert not [e for e in bob.pending_events() if e.seq]
    await chat.stop()
    await chat.start()
    sent = []
    for _attempt in range(50):
        try:
            sent.append(await _send(alice, conversation_id, "during the break", key="during"))
            break
        except ServerError as exc:
            assert exc.code == gateway_pb2.ERROR_CODE_UNAVAILABLE
            await asyncio.sleep(0.1)
    got = await _next_message(bob)
    assert got == (sent[0], "during the break") and sent[0] == quiet + 1
    await alice.close()
    await bob.close()


async def test_a_json_history_frame_reads_forward_from_the_start(edge: Gateway) -> None:
    """getHistory with direction FORWARD and no afterSeq answers seq 1.. first, not the newest."""
    alice = await GatewayClient.connect(edge.url, token("alice"))
    conversation_id = await alice.create_group("bob")
    for n in range(3):
        await _send(alice, conversation_id, f"m{n + 1}")
    history = {
        "conversationId": conversation_id,
        "limit": 2,
        "direction": "HISTORY_DIRECTION_FORWARD",
    }
    await alice.send_raw(json.dumps({"requestId": "h1", "getHistory": history}))
    page = (await alice.answer("h1")).get_history
    assert ([m.seq for m in page.messages], page.has_more) == ([1, 2], True)
    assert [m.body for m in page.messages] == ["m1", "m2"]
    await alice.close()
