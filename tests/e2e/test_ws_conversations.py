"""Whole conversations through the WebSocket edge in front of the real chat_service.

Users connect as apps do (subprotocol token, JSON or binary frames) and exchange messages, edits,
deletes and receipts in a direct conversation and in a group of five; devices reconnect and resume;
non-members and blocked users are refused; bad frames are answered and change nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatmesh.events.v1 import events_pb2

from chat_service.config import ChatConfig
from chat_service.server import ChatService, build_chat_service
from chatmesh_common.auth import issue_token
from chatmesh_common.clock import SystemClock
from gateway_ws.config import GatewayConfig
from gateway_ws.server import GatewayService, build_gateway_service
from tests.gateway.client import GatewayClient, ServerError

pytestmark = pytest.mark.timeout(60)

SECRET = "e2e-ws-secret-of-at-least-thirty-two-bytes"


@dataclass
class System:
    chat: ChatService
    gateway: GatewayService

    async def connect(
        self, user: str, device: str = "phone", binary: bool = False
    ) -> GatewayClient:
        token = issue_token(SECRET, user, device)
        return await GatewayClient.connect(self.gateway.url, token, binary=binary)


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    clock = SystemClock()
    chat = build_chat_service(
        ChatConfig(jwt_secret=SECRET, data_dir=str(tmp_path), grpc_bind="127.0.0.1:0", drain_s=0),
        clock=clock,
    )
    await chat.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
    gateway = build_gateway_service(
        GatewayConfig(
            jwt_secret=SECRET,
            host="127.0.0.1",
            port=0,
            chat_target=f"127.0.0.1:{chat.port}",
            drain_s=0,
        ),
        chat_channel=channel,
        clock=clock,
    )
    await gateway.start()
    try:
        yield System(chat, gateway)
    finally:
        await gateway.stop()
        await channel.close(None)
        await chat.stop()


async def _create(client: GatewayClient, kind: str, *members: str) -> str:
    answer = await client.call(
        "create_conversation", kind=kind, title="t", member_ids=list(members)
    )
    return str(answer.create_conversation.conversation.conversation.conversation_id)


async def _send(client: GatewayClient, cid: str, body: str) -> int:
    answer = await client.call(
        "send_message",
        conversation_id=cid,
        client_msg_id=client.next_request_id() + body,
        body=body,
    )
    return int(answer.send_message.message.seq)


async def _log_events(
    client: GatewayClient, cid: str, count: int
) -> list[events_pb2.ConversationEvent]:
    """The next `count` events of the conversation's log (seq > 0), duplicates dropped by seq."""
    seen: dict[int, events_pb2.ConversationEvent] = {}
    order: list[int] = []
    async with asyncio.timeout(15):
        while len(order) < count:
            event = await client.next_event()
            if event.conversation_id != cid or event.seq == 0 or event.seq in seen:
                continue
            seen[event.seq] = event
            order.append(event.seq)
    assert order == sorted(order), f"events out of order: {order}"
    return [seen[s] for s in order]


async def _receipt(client: GatewayClient, cid: str, user: str) -> events_pb2.ReceiptMoved:
    async with asyncio.timeout(10):
        while True:
            event = await client.next_event()
            if event.conversation_id == cid and event.HasField("receipt_moved"):
                if event.receipt_moved.user_id == user:
                    return event.receipt_moved


async def test_direct_conversation_messages_edits_deletes_and_receipts(system: System) -> None:
    """Two users chat: each event reaches the other, receipts move, unread counts are exact."""
    alice = await system.connect("alice")
    bob = await system.connect("bob", binary=True)
    await alice.ping()
    await bob.ping()  # both live streams started
    cid = await _create(alice, "CONVERSATION_KIND_DIRECT", "bob")
    one = await _send(alice, cid, "hi bob")
    two = await _send(bob, cid, "hi alice")
    three = await _send(alice, cid, "lunch?")
    edited = await alice.call(
        "edit_message", conversation_id=cid, message_seq=three, body="lunch at noon?"
    )
    assert edited.edit_message.message.version == 2
    await alice.call("delete_message", conversation_id=cid, message_seq=one)

    events = await _log_events(bob, cid, 5)
    assert [e.WhichOneof("payload") for e in events] == [
        "message_created",
        "message_created",
        "message_created",
        "message_edited",
        "message_deleted",
    ]
    assert events[3].message_edited.message.body == "lunch at noon?"
    assert events[4].message_deleted.message.deleted and not events[4].message_deleted.message.body

    listed = await bob.call("list_conversations")
    view = listed.list_conversations.conversations[0]
    # alice's live messages: "hi bob" (deleted) and "lunch" (edited) -> 1 unread for bob.
    assert view.unread_count == 1
    assert view.last_message.body == "lunch at noon?"

    read = await bob.call("mark_read", conversation_id=cid, seq=three)
    assert read.mark_read.last_read_seq == three and read.mark_read.unread_count == 0
    receipt = await _receipt(alice, cid, "bob")
    assert receipt.last_read_seq == three
    older = await bob.call("mark_read", conversation_id=cid, seq=two)
    assert older.mark_read.last_read_seq == three  # markers never move back


async def test_group_of_five_every_member_gets_every_event_in_order(system: System) -> None:
    """Five members send at once; each member's device sees all messages in one seq order."""
    names = ["owner", "m1", "m2", "m3", "m4"]
    clients = [await system.connect(n, binary=(i % 2 == 1)) for i, n in enumerate(names)]
    for client in clients:
        await client.ping()
    cid = await _create(clients[0], "CONVERSATION_KIND_GROUP", *names[1:])
    seqs = await asyncio.gather(
        *(_send(c, cid, f"from {n}") for c, n in zip(clients, names, strict=True))
    )
    assert sorted(seqs) == [1, 2, 3, 4, 5]
    await clients[0].call("delete_message", conversation_id=cid, message_seq=seqs[2])
    for client in clients:
        events = await _log_events(client, cid, 6)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
        bodies = {e.message_created.message.body for e in events[:5]}
        assert bodies == {f"from {n}" for n in names}
        assert events[5].HasField("message_deleted")
    await clients[3].call("mark_read", conversation_id=cid, seq=6)
    for client in (clients[0], clients[1]):
        assert (await _receipt(client, cid, "m3")).last_read_seq == 6


async def test_reconnecting_device_resumes_with_no_gap(system: System) -> None:
    """A device away while messages, an edit and a delete happen gets all of them on resume."""
    alice = await system.connect("alice")
    bob = await system.connect("bob")
    await bob.ping()
    cid = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    first = await _send(alice, cid, "before")
    seen = await _log_events(bob, cid, 1)
    await bob.ws.close()

    later = [await _send(alice, cid, f"while away {i}") for i in range(3)]
    await alice.call("edit_message", conversation_id=cid, message_seq=first, body="before (edited)")
    await alice.call("delete_message", conversation_id=cid, message_seq=later[0])

    back = await GatewayClient.connect(
        system.gateway.url, issue_token(SECRET, "bob", "phone"), resume={cid: seen[-1].seq}
    )
    replay = back.pending_events()
    log = [e for e in replay if e.conversation_id == cid and e.seq > 0]
    assert [e.seq for e in log] == list(range(seen[-1].seq + 1, seen[-1].seq + 6))
    assert log[3].message_edited.message.body == "before (edited)"
    assert log[4].message_deleted.message.seq == later[0]
    nxt = await _send(alice, cid, "live again")
    assert [e.seq for e in await _log_events(back, cid, 1)] == [nxt]


async def test_non_member_is_refused_on_send_history_and_resume(system: System) -> None:
    """A user outside the conversation gets PERMISSION_DENIED frames and a revoked cursor."""
    alice = await system.connect("alice")
    cid = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    await _send(alice, cid, "members only")
    eve = await system.connect("eve")
    for frame in (
        eve.frame("send_message", conversation_id=cid, client_msg_id="x", body="let me in"),
        eve.frame("get_history", conversation_id=cid),
        eve.frame("get_conversation", conversation_id=cid),
    ):
        refused = await eve.request(frame)
        assert refused.error.code == 7  # ERROR_CODE_PERMISSION_DENIED
    resumed = await eve.resume({cid: 0})
    assert list(resumed.revoked_conversation_ids) == [cid]
    assert not [e for e in eve.pending_events() if e.conversation_id == cid]
    history = await alice.call("get_history", conversation_id=cid)
    assert [m.body for m in history.get_history.messages] == ["members only"]


async def test_blocked_user_cannot_open_or_write_a_direct_conversation(system: System) -> None:
    """After bob blocks alice, alice can neither write their direct chat nor open a new one."""
    alice = await system.connect("alice")
    bob = await system.connect("bob")
    cid = await _create(alice, "CONVERSATION_KIND_DIRECT", "bob")
    await bob.call("block_user", user_id="alice")
    with pytest.raises(ServerError) as refused:
        await _send(alice, cid, "hello?")
    assert refused.value.frame.error.code == 7
    with pytest.raises(ServerError):
        await _create(alice, "CONVERSATION_KIND_DIRECT", "bob")
    history = await bob.call("get_history", conversation_id=cid)
    assert list(history.get_history.messages) == []


async def test_bad_frames_get_error_frames_and_change_nothing(system: System) -> None:
    """Malformed, unknown, mistyped and oversize-body frames get errors; the socket stays open."""
    alice = await system.connect("alice")
    cid = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    await _send(alice, cid, "kept")
    await alice.send_raw("{not json")
    await alice.send_raw('{"requestId": "u1", "noSuchFrame": {}}')
    await alice.send_raw('{"requestId": "w1", "getHistory": {"conversationId": 5, "limit": "x"}}')
    big = alice.frame(
        "send_message",
        request_id="big",
        conversation_id=cid,
        client_msg_id="big",
        body="€" * 6000,  # 18,000 bytes of UTF-8: over the 16 KiB body limit
    )
    answer = await alice.request(big)
    assert answer.error.code == 3 and "body" in answer.error.message
    for request_id in ("u1", "w1"):
        assert (await alice.answer(request_id)).error.code == 3
    history = await alice.call("get_history", conversation_id=cid)
    assert [m.body for m in history.get_history.messages] == ["kept"]


async def test_a_socket_that_sends_nothing_still_gets_live_events(system: System) -> None:
    """A device that authenticates by subprotocol and stays silent receives new messages."""
    alice = await system.connect("alice")
    cid = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    bob = await system.connect("bob")  # no frame from bob at all
    await asyncio.sleep(1.5)  # past live_start_delay_s: what the stream held is released
    seq = await _send(alice, cid, "are you there?")
    events = await _log_events(bob, cid, 1)
    assert events[0].seq == seq


async def test_a_quiet_socket_gets_an_event_committed_100_ms_after_auth(system: System) -> None:
    """SPEC 4: a device that sends nothing still gets what is sent during its first second."""
    alice = await system.connect("alice")
    cid = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    bob = await system.connect("bob")  # no frame from bob at all
    await asyncio.sleep(0.1)  # the scenario: the message is committed 100 ms after bob's ready
    seq = await _send(alice, cid, "early")
    events = await _log_events(bob, cid, 1)
    assert (events[0].seq, events[0].message_created.message.body) == (seq, "early")


async def test_resume_after_events_replays_first_then_live_with_no_gap(system: System) -> None:
    """Events committed between ready and a late `resume` (also in a conversation the resume does
    not name) all arrive: the replay before `resumed`, live events after it, none lost."""
    alice = await system.connect("alice")
    named = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    other = await _create(alice, "CONVERSATION_KIND_GROUP", "bob")
    seen = await _send(alice, named, "seen before")
    bob = await system.connect("bob")
    await asyncio.sleep(0.1)
    early = [await _send(alice, cid, "before the resume") for cid in (named, other)]
    await bob.resume({named: seen})
    kinds = [str(f.WhichOneof("frame")) for f, _ in bob.received]
    replay = [(e.conversation_id, e.seq) for e in bob.pending_events() if e.seq]
    assert kinds[-1] == "resumed" and kinds.count("resumed") == 1
    # No order across conversations (SPEC 2); each conversation's part in seq order.
    assert sorted(replay) == sorted([(named, early[0]), (other, early[1])])
    live = await _send(alice, other, "after the resume")
    assert [e.seq for e in await _log_events(bob, other, 1)] == [live]
    assert live == early[1] + 1
