"""The gateway over real sockets: framing, authentication, close codes, requests, the event
stream and its recovery, slow consumers and shutdown. Everything runs on free ports in-process.

The `gateway` fixture stands in front of the real chat_service; tests that break streams, stop
the service, refuse calls with a chosen status, push items the service would not send or look
at what the gateway asked for use `fake_gateway`, in front of tests/gateway/fake_chat.py (kept in
agreement with the real service by tests/gateway/test_fake_matches_chat.py).
"""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway_ws.server import Gateway
from tests.gateway.client import GatewayClient, ServerError, cursor_map, eventually
from tests.gateway.conftest import Chat, GatewayFactory, token
from tests.gateway.fake_chat import FakeChat

pytestmark = pytest.mark.timeout(30)

E = gateway_pb2


def _kind(frame: gateway_pb2.ServerFrame) -> str | None:
    kind = frame.WhichOneof("frame")
    return None if kind is None else str(kind)


async def _send(client: GatewayClient, conversation_id: str, body: str) -> gateway_pb2.ServerFrame:
    return await client.call(
        "send_message",
        conversation_id=conversation_id,
        client_msg_id=client.next_request_id(),
        body=body,
    )


# -- handshake and authentication ---------------------------------------------------------------


async def test_subprotocol_token_authenticates_and_ready_describes_the_connection(
    gateway: Gateway,
) -> None:
    """`bearer.<token>` in Sec-WebSocket-Protocol: ready first, chatmesh.v1 selected."""
    client = await GatewayClient.connect(gateway.url, token("alice", "laptop"))
    assert client.ws.subprotocol == "chatmesh.v1"
    assert client.ready == gateway_pb2.Ready(
        user_id="alice", device_id="laptop", heartbeat_interval_ms=20000, max_frame_bytes=65536
    )
    await client.close()


@pytest.mark.parametrize("binary", [False, True])
async def test_auth_frame_authenticates_and_ready_echoes_its_request_id(
    gateway: Gateway, binary: bool
) -> None:
    """The first frame may be `auth`; `ready` answers it by request_id, in its encoding."""
    client = await GatewayClient.connect(gateway.url, token("alice"), auth="frame", binary=binary)
    assert client.ready is not None and client.ready.user_id == "alice"
    assert client.received[0][1] is binary
    assert (await client.ping()).WhichOneof("frame") == "pong"
    await client.close()


async def test_invalid_subprotocol_token_gets_an_error_then_1008(gateway: Gateway) -> None:
    """A bad token: an UNAUTHENTICATED error frame, then close 1008."""
    client = await GatewayClient.connect(gateway.url, "not-a-jwt", expect_ready=False)
    frame = await client.next_unsolicited()
    assert frame.error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert (await client.closed())[0] == 1008


async def test_expired_token_in_auth_frame_gets_an_error_then_1008(gateway: Gateway) -> None:
    """An expired token in an auth frame: error echoing the request_id, then 1008."""
    client = await GatewayClient.connect(gateway.url, auth="none")
    frame = client.frame("auth", request_id="a1", token=token("alice", ttl_s=-60))
    answer = await client.request(frame)
    assert answer.error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert "expired" in answer.error.message
    assert (await client.closed())[0] == 1008


async def test_no_auth_in_time_gets_an_error_then_1008(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """Silence after connecting: UNAUTHENTICATED after the auth timeout, then 1008."""
    gateway = await gateway_factory(chat.target, auth_timeout_s=0.3)
    client = await GatewayClient.connect(gateway.url, auth="none")
    frame = await client.next_unsolicited()
    assert frame.error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert (await client.closed())[0] == 1008


async def test_frame_before_auth_is_refused_and_the_socket_stays_open(gateway: Gateway) -> None:
    """A request before auth gets UNAUTHENTICATED with its request_id; auth still works after."""
    client = await GatewayClient.connect(gateway.url, auth="none")
    answer = await client.request(client.frame("ping", request_id="early"))
    assert (answer.request_id, answer.error.code) == ("early", E.ERROR_CODE_UNAUTHENTICATED)
    bad = await client.request(client.frame("ping", request_id="x" * 65))
    assert bad.error.code == E.ERROR_CODE_INVALID_ARGUMENT
    ready = await client.request(client.frame("auth", request_id="a", token=token("alice")))
    assert _kind(ready) == "ready"
    await client.close()


async def test_token_in_the_url_is_ignored(gateway: Gateway) -> None:
    """Tokens are never read from the URL: the socket is still unauthenticated."""
    client = await GatewayClient.connect(
        f"{gateway.url}?token={token('alice')}&access_token={token('alice')}", auth="none"
    )
    answer = await client.request(client.frame("ping", request_id="p"))
    assert answer.error.code == E.ERROR_CODE_UNAUTHENTICATED
    await client.close()


async def test_other_paths_get_http_404(gateway: Gateway) -> None:
    """Only /v1/ws upgrades; anything else is 404."""
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://{gateway.host}:{gateway.port}/v2/ws")
    assert caught.value.response.status_code == 404


async def test_healthz_answers_ok(gateway: Gateway) -> None:
    """GET /healthz is 200 while serving (for load balancers)."""

    def get() -> int:
        url = f"http://{gateway.host}:{gateway.port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)

    assert await asyncio.to_thread(get) == 200


async def test_reauth_with_a_fresh_token_for_the_same_device_is_accepted(gateway: Gateway) -> None:
    """A later auth frame replaces the token (same user and device) and gets ready again."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    answer = await client.request(client.frame("auth", request_id="re", token=token("alice")))
    assert _kind(answer) == "ready"
    other = await client.request(client.frame("auth", request_id="bob", token=token("bob")))
    assert other.error.code == E.ERROR_CODE_INVALID_ARGUMENT
    await client.close()


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
async def test_ping_gets_pong_in_the_encoding_of_the_request(
    gateway: Gateway, binary: bool
) -> None:
    """App-level ping: pong with the request_id, text for text and binary for binary."""
    client = await GatewayClient.connect(gateway.url, token("alice"), binary=binary)
    answer = await client.ping()
    assert _kind(answer) == "pong"
    assert client.received[-1][1] is binary
    await client.close()


@pytest.mark.parametrize("binary", [False, True])
async def test_send_message_is_answered_by_request_id(gateway: Gateway, binary: bool) -> None:
    """send_message calls SendMessage with the token and answers in send_message."""
    client = await GatewayClient.connect(gateway.url, token("alice"), binary=binary)
    cid = await client.create_group("bob")
    answer = await _send(client, cid, "hello")
    assert answer.send_message.message.seq == 1
    assert answer.send_message.message.sender_id == "alice"
    assert answer.send_message.message.body == "hello"
    await client.close()


async def test_grpc_error_becomes_an_error_frame_and_the_socket_stays_open(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """A refused call is an error frame with the mapped code and the status details."""
    fake_chat.add_conversation("c1", "bob")
    client = await GatewayClient.connect(fake_gateway.url, token("alice"))
    with pytest.raises(ServerError) as caught:
        await _send(client, "c1", "hi")
    assert caught.value.code == E.ERROR_CODE_PERMISSION_DENIED
    assert caught.value.message == "not a member"
    for status in ("NOT_FOUND", "FAILED_PRECONDITION", "UNAVAILABLE", "INVALID_ARGUMENT"):
        with pytest.raises(ServerError) as caught:
            await _send(client, "c1", f"status:{status}")
        assert gateway_pb2.ErrorCode.Name(caught.value.code) == f"ERROR_CODE_{status}"
    assert _kind(await client.ping()) == "pong"
    await client.close()


async def test_resource_exhausted_from_the_service_carries_its_retry_after(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """A `retry-after-ms` trailer becomes the error frame's retry_after_ms."""
    client = await GatewayClient.connect(fake_gateway.url, token("alice"))
    with pytest.raises(ServerError) as caught:
        await _send(client, "c1", "status:RESOURCE_EXHAUSTED")
    assert caught.value.code == E.ERROR_CODE_RESOURCE_EXHAUSTED
    assert caught.value.frame.error.retry_after_ms == 1500
    await client.close()


async def test_unimplemented_method_maps_to_unimplemented(fake_gateway: Gateway) -> None:
    """Whatever status the service answers is passed on (the fake lacks ListMembers)."""
    client = await GatewayClient.connect(fake_gateway.url, token("alice"))
    with pytest.raises(ServerError) as caught:
        await client.call("list_members", conversation_id="c1")
    assert caught.value.code == E.ERROR_CODE_UNIMPLEMENTED
    await client.close()


async def test_a_slow_request_does_not_hold_up_a_send(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """Requests run concurrently: a send is answered while a history call is still running."""
    fake_chat.add_conversation("c1", "alice")
    fake_chat.history_delay_s = 1.0
    client = await GatewayClient.connect(fake_gateway.url, token("alice"))
    history = client.frame("get_history", conversation_id="c1")
    await client.send(history)
    sent = await _send(client, "c1", "fast")
    assert sent.send_message.message.seq == 1
    kinds = [_kind(frame) for frame, _ in client.received]
    assert "get_history" not in kinds
    page = await client.answer(history.request_id)
    assert _kind(page) == "get_history"
    await client.close()


async def test_sends_over_the_rate_limit_get_resource_exhausted_with_retry_after(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """Sends beyond the burst are refused with retry_after_ms and never reach the service."""
    gateway = await gateway_factory(fake_chat.target, send_rate_per_s=1.0, send_burst=3)
    fake_chat.add_conversation("c1", "alice")
    client = await GatewayClient.connect(gateway.url, token("alice"))
    for n in range(3):
        await _send(client, "c1", f"m{n}")
    with pytest.raises(ServerError) as caught:
        await _send(client, "c1", "one too many")
    assert caught.value.code == E.ERROR_CODE_RESOURCE_EXHAUSTED
    assert 0 < caught.value.frame.error.retry_after_ms <= 1000
    assert fake_chat.sends == 3
    # The limit is per user: another socket of the same user shares it.
    second = await GatewayClient.connect(gateway.url, token("alice", "tablet"))
    with pytest.raises(ServerError):
        await _send(second, "c1", "still limited")
    await client.close()
    await second.close()


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_frames_get_error_frames_with_their_request_id(gateway: Gateway) -> None:
    """Malformed JSON, unknown types, wrong types, bad UTF-8, long ids: errors; socket open."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    bad_text = [
        ('{"requestId":"b1","ping":', "b1"),
        ('{"requestId":"b2","videoCall":{}}', "b2"),
        ('{"requestId":"b3","sendMessage":"hi"}', "b3"),
        ('{"requestId":"b4","getHistory":{"limit":"many"}}', "b4"),
        ('{"requestId":"b5"}', "b5"),
    ]
    for data, request_id in bad_text:
        await client.send_raw(data)
        answer = await client.answer(request_id)
        assert answer.error.code == E.ERROR_CODE_INVALID_ARGUMENT, data
    frame = client.frame("send_message", request_id="b6", conversation_id="c", body="ok")
    await client.send_raw(frame.SerializeToString().replace(b"ok", b"\xff\xff"))
    answer = await client.answer("b6")
    assert answer.error.code == E.ERROR_CODE_INVALID_ARGUMENT
    assert "send_message.body" in answer.error.message
    assert client.received[-1][1] is True  # a binary frame's error is binary
    assert _kind(await client.ping()) == "pong"
    await client.close()


async def test_text_frame_with_invalid_utf8_is_closed_with_1007(gateway: Gateway) -> None:
    """websockets itself closes a text message that is not UTF-8 with 1007."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    await client.ws.send(b'{"requestId":"\xff","ping":{}}', text=True)
    assert (await client.closed())[0] == 1007


async def test_frame_over_64_kib_is_closed_with_1009(gateway: Gateway) -> None:
    """A client frame over max_frame_bytes closes the socket with 1009."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    await client.send_raw(" " * (64 * 1024))  # exactly the limit: accepted (and malformed)
    await client.next_unsolicited()
    await client.send_raw(" " * (64 * 1024 + 1))
    assert (await client.closed())[0] == 1009


async def test_ten_bad_frames_within_ten_seconds_close_the_socket_with_1008(
    gateway: Gateway,
) -> None:
    """Abuse: the tenth bad frame is answered, then the socket closes with 1008."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    for n in range(10):
        await client.send_raw(f'{{"requestId":"b{n}","nope":{{}}}}')
    code, _reason = await client.closed()
    assert code == 1008
    errors = [f for f, _ in client.received if _kind(f) == "error"]
    assert len(errors) == 10


# -- events ---------------------------------------------------------------------------------------


async def test_first_frame_that_is_not_resume_starts_a_live_stream(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """No resume: the stream starts with no cursors; live events arrive as `event` frames."""
    fake_chat.add_conversation("c1", "alice", "bob")
    fake_chat.append_message("c1", "bob", "before")
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.ping()
    await fake_chat.wait_streams(1)
    assert list(fake_chat.subscribe_requests[0].cursors) == []
    assert fake_chat.subscribe_requests[0].device_id == "phone"
    bob = await GatewayClient.connect(fake_gateway.url, token("bob"))
    await _send(bob, "c1", "live")
    event = await alice.next_event()
    assert (event.conversation_id, event.seq) == ("c1", 2)
    assert event.message_created.message.body == "live"
    assert alice.pending_events() == []
    await alice.close()
    await bob.close()


async def test_resume_replays_after_the_cursors_then_answers_resumed(gateway: Gateway) -> None:
    """resume: the replay, then `resumed` with the request_id and the revoked conversations."""
    bob = await GatewayClient.connect(gateway.url, token("bob"))
    c1 = await bob.create_group("alice")
    gone = await bob.create_group("carol")
    for n in range(5):
        await _send(bob, c1, f"m{n + 1}")
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    resumed = await alice.resume({c1: 2, gone: 4})
    assert list(resumed.revoked_conversation_ids) == [gone]
    assert [e.seq for e in alice.pending_events()] == [3, 4, 5]
    kinds = [_kind(f) for f, _ in alice.received]
    assert kinds == ["ready", "event", "event", "event", "resumed"]
    await alice.close()


async def test_auth_frame_with_cursors_resumes(gateway: Gateway) -> None:
    """Cursors in the auth frame: ready, the replay, then resumed, all for the auth request."""
    writer = await GatewayClient.connect(gateway.url, token("alice", "laptop"))
    c1 = await writer.create_group("bob")
    for n in range(3):
        await _send(writer, c1, f"m{n + 1}")
    alice = await GatewayClient.connect(gateway.url, token("alice"), auth="frame", resume={c1: 1})
    resumed = await alice.answer("auth")
    assert _kind(resumed) == "resumed"
    assert [e.seq for e in alice.pending_events()] == [2, 3]
    await alice.close()


async def test_events_follow_the_encoding_of_the_last_client_frame(gateway: Gateway) -> None:
    """Pushed events are binary after a binary frame, text after a text frame."""
    bob = await GatewayClient.connect(gateway.url, token("bob"))
    cid = await bob.create_group("alice")
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    await alice.resume({cid: 0})  # the stream is live at chat_service once this is answered
    await alice.request(alice.frame("ping"), binary=True)
    await _send(bob, cid, "one")
    assert (await alice.next_event()).seq == 1
    assert alice.received[-1][1] is True
    await alice.request(alice.frame("ping"), binary=False)
    await _send(bob, cid, "two")
    assert (await alice.next_event()).seq == 2
    assert alice.received[-1][1] is False
    await alice.close()


async def test_broken_stream_resubscribes_from_the_delivered_seqs_without_gap(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """UNAVAILABLE mid-stream: the gateway resubscribes from what it delivered; no gap, no dup."""
    fake_chat.add_conversation("c1", "alice", "bob")
    fake_chat.add_conversation("c2", "alice", "bob")
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.resume({"c1": 0})
    fake_chat.append_message("c1", "bob", "a")
    fake_chat.append_message("c2", "bob", "b")
    assert [(e.conversation_id, e.seq) for e in await alice.events(2)] == [("c1", 1), ("c2", 1)]
    fake_chat.break_streams()
    # Written while the gateway has no stream: only a replay can deliver these.
    await asyncio.sleep(0.05)
    fake_chat.append_message("c1", "bob", "during 1")
    fake_chat.append_message("c2", "bob", "during 2")
    # The streams: the one opened at authentication, the resume's, the resubscription.
    await fake_chat.wait_streams(3)
    assert cursor_map(fake_chat.subscribe_requests[2].cursors) == {"c1": 1, "c2": 1}
    got = [(e.conversation_id, e.seq) for e in await alice.events(2)]
    assert sorted(got) == [("c1", 2), ("c2", 2)]
    fake_chat.append_message("c1", "bob", "after")
    assert (await alice.next_event()).seq == 3
    await asyncio.sleep(0.1)
    assert alice.pending_events() == []
    await alice.close()


async def test_chat_service_restart_is_survived(fake_gateway: Gateway, fake_chat: FakeChat) -> None:
    """The service goes away and comes back on its port: events written meanwhile arrive."""
    fake_chat.add_conversation("c1", "alice", "bob")
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.resume({"c1": 0})
    fake_chat.append_message("c1", "bob", "before")
    assert (await alice.next_event()).seq == 1
    await fake_chat.stop(0)
    fake_chat.append_message("c1", "bob", "while down")
    await asyncio.sleep(0.3)
    await fake_chat.start()
    fake_chat.append_message("c1", "bob", "after")
    events = await alice.events(2, timeout_s=10)
    assert [e.seq for e in events] == [2, 3]
    await alice.close()


async def test_later_resume_uses_client_cursors_for_named_and_tracked_for_the_rest(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """A second resume restarts the stream: the client's cursors override the tracked ones."""
    fake_chat.add_conversation("c1", "alice")
    fake_chat.add_conversation("c2", "alice")
    for cid in ("c1", "c2"):
        for n in range(3):
            fake_chat.append_message(cid, "alice", f"{cid}-{n + 1}")
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.resume({"c1": 0, "c2": 0})
    assert len(alice.pending_events()) == 6
    await alice.resume({"c1": 1})
    assert cursor_map(fake_chat.subscribe_requests[-1].cursors) == {"c1": 1, "c2": 3}
    assert [(e.conversation_id, e.seq) for e in alice.pending_events()] == [("c1", 2), ("c1", 3)]
    await alice.close()


async def test_duplicate_events_are_dropped_and_live_signals_pass(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """An event at or below the delivered seq is dropped; seq-0 signals always pass."""
    fake_chat.add_conversation("c1", "alice")
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.ping()
    await fake_chat.wait_streams(1)
    event = fake_chat.append_message("c1", "alice", "once")
    fake_chat.push("alice", event)
    receipt = events_pb2.ConversationEvent(conversation_id="c1", seq=0)
    receipt.receipt_moved.user_id = "bob"
    fake_chat.push("alice", receipt)
    fake_chat.push("alice", receipt)
    events = await alice.events(3)
    assert [e.seq for e in events] == [1, 0, 0]
    await asyncio.sleep(0.1)
    assert alice.pending_events() == []
    await alice.close()


async def test_typing_arrives_as_an_event_frame_without_presence(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """Typing comes in the event stream (seq 0, typing_changed): pushed as an `event` frame to a
    socket that watches nobody, and it moves no cursor (the next message still arrives)."""
    fake_chat.add_conversation("c1", "alice", "bob")
    bob = await GatewayClient.connect(fake_gateway.url, token("bob"))
    await bob.ping()
    await fake_chat.wait_streams(1)
    typing = events_pb2.ConversationEvent(conversation_id="c1", seq=0, actor_id="alice")
    typing.typing_changed.user_id = "alice"
    typing.typing_changed.typing = True
    typing.typing_changed.expires_at.FromSeconds(1_700_000_000)
    assert fake_chat.push("bob", typing) == 1
    message = fake_chat.append_message("c1", "alice", "hi")
    events = await bob.events(2)
    assert events[0] == typing
    assert (events[1].conversation_id, events[1].seq) == ("c1", message.seq)
    await bob.close()


async def test_stream_refused_as_unauthenticated_closes_with_1008(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """If chat_service stops accepting the token, the device is told and the socket closes."""
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.ping()
    await fake_chat.wait_streams(1)
    fake_chat.break_streams(grpc.StatusCode.UNAUTHENTICATED)
    frame = await alice.next_unsolicited()
    assert frame.error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert (await alice.closed())[0] == 1008


# -- slow consumers and shutdown ------------------------------------------------------------------


async def test_a_client_that_stops_reading_is_closed_with_4008(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """Outbound queue overflow closes only that socket, with 4008; others keep working."""
    gateway = await gateway_factory(fake_chat.target, outbound_queue_max=20)
    raw = await connect(
        gateway.url,
        subprotocols=["chatmesh.v1", f"bearer.{token('slow')}"],  # type: ignore[list-item]
        max_queue=1,
        max_size=None,
    )
    assert "ready" in str(await raw.recv())
    await raw.send('{"requestId":"p","ping":{}}')  # starts the live stream
    assert "pong" in str(await raw.recv())
    await fake_chat.wait_streams(1)
    healthy = await GatewayClient.connect(gateway.url, token("healthy"))
    big = events_pb2.ConversationEvent(conversation_id="c", seq=0)
    big.receipt_moved.user_id = "x" * 60_000
    for _ in range(400):  # ~24 MB: more than socket buffers hold
        fake_chat.push("slow", big)
    await asyncio.sleep(1.0)  # the gateway fills the socket, then its queue, then gives up
    assert _kind(await healthy.ping()) == "pong"
    received = 0
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            await raw.recv()
            received += 1
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 4008
    assert received < 400
    await healthy.close()


async def test_a_write_stalled_too_long_is_closed_with_4008(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """Nothing more queued, but the socket took nothing for send_stall_timeout_s: 4008."""
    gateway = await gateway_factory(
        fake_chat.target, send_stall_timeout_s=0.5, outbound_queue_max=1000
    )
    raw = await connect(
        gateway.url,
        subprotocols=["chatmesh.v1", f"bearer.{token('slow')}"],  # type: ignore[list-item]
        max_queue=1,
        max_size=None,
    )
    await raw.recv()
    await raw.send('{"requestId":"p","ping":{}}')
    await raw.recv()
    await fake_chat.wait_streams(1)
    big = events_pb2.ConversationEvent(conversation_id="c", seq=0)
    big.receipt_moved.user_id = "x" * 60_000
    for _ in range(200):  # enough to block a write, far below the queue bound
        fake_chat.push("slow", big)
    await asyncio.sleep(1.5)
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            await raw.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 4008


async def test_stop_closes_sockets_with_1001_and_cancels_streams(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """Graceful stop: 1001 going away for every socket, their event streams cancelled."""
    gateway = await gateway_factory(fake_chat.target)
    clients = [await GatewayClient.connect(gateway.url, token(f"u{n}")) for n in range(3)]
    for client in clients:
        await client.ping()
    await fake_chat.wait_streams(3)
    await gateway.stop()
    for client in clients:
        assert (await client.closed())[0] == 1001
    assert gateway.connection_count == 0
    await eventually(lambda: not fake_chat.streams)
    with pytest.raises(OSError):
        await connect(gateway.url, open_timeout=1)


async def test_connections_are_counted_by_close_code(gateway: Gateway) -> None:
    """chatmesh_ws_connections_total{code} counts closed connections."""
    from chatmesh_common.metrics import WS_CONNECTIONS

    def count() -> float:
        return float(WS_CONNECTIONS.labels("1008")._value.get())

    before = count()
    client = await GatewayClient.connect(gateway.url, "bad-token", expect_ready=False)
    await client.closed()
    await eventually(lambda: count() != before)
    assert count() == before + 1


async def test_ten_bad_frames_before_auth_close_the_socket_with_1008(gateway: Gateway) -> None:
    """The abuse limit also holds before authentication."""
    client = await GatewayClient.connect(gateway.url, auth="none")
    for n in range(10):
        await client.send_raw(f'{{"requestId":"b{n}","ping":{{}}}}')
    assert (await client.closed())[0] == 1008
    assert sum(_kind(f) == "error" for f, _ in client.received) == 10


async def test_fatal_stream_error_answers_the_resume_and_the_next_frame_restarts(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """A stream refused for good (not UNAVAILABLE) answers the resume with the error; the
    next frame starts a new stream."""
    fake_chat.add_conversation("c1", "alice")
    fake_chat.refuse_streams = grpc.StatusCode.PERMISSION_DENIED
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    with pytest.raises(ServerError) as caught:
        await alice.resume({"c1": 0})
    assert caught.value.code == E.ERROR_CODE_PERMISSION_DENIED
    fake_chat.refuse_streams = None
    assert _kind(await alice.ping()) == "pong"
    # After the stream opened at authentication (refused) and perhaps the resume's (refused),
    # the one the ping opens, from the resume's cursors.
    await fake_chat.wait_streams(2)
    assert cursor_map(fake_chat.subscribe_requests[-1].cursors) == {"c1": 0}
    fake_chat.append_message("c1", "alice", "back")
    assert (await alice.next_event()).seq == 1
    await alice.close()


async def test_fatal_error_of_a_running_stream_is_pushed_as_an_error(
    fake_gateway: Gateway, fake_chat: FakeChat
) -> None:
    """No resume waiting: the error frame has an empty request_id; the socket stays open."""
    alice = await GatewayClient.connect(fake_gateway.url, token("alice"))
    await alice.ping()
    await fake_chat.wait_streams(1)
    fake_chat.break_streams(grpc.StatusCode.FAILED_PRECONDITION)
    error = await alice.next_unsolicited()
    assert (error.request_id, error.error.code) == ("", E.ERROR_CODE_FAILED_PRECONDITION)
    assert _kind(await alice.ping()) == "pong"
    await fake_chat.wait_streams(2)
    await alice.close()


async def test_pipelined_requests_are_each_answered_whole(gateway: Gateway) -> None:
    """Many requests in flight on one socket, both encodings: every answer intact and matched."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    cid = await client.create_group("bob")
    frames_sent = []
    for n in range(40):  # the send burst
        frame = client.frame(
            "send_message", conversation_id=cid, client_msg_id=f"k{n}", body=f"b{n}"
        )
        await client.send(frame, binary=n % 2 == 0)
        frames_sent.append(frame)
    for n, frame in enumerate(frames_sent):
        answer = await client.answer(frame.request_id)
        assert answer.send_message.message.body == f"b{n}"
    assert sorted(
        f.send_message.message.seq for f, _ in client.received if _kind(f) == "send_message"
    ) == list(range(1, 41))
    await client.close()


async def test_requests_beyond_the_in_flight_bound_wait_their_turn(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """With one request in flight allowed, later ones queue (the socket is not read) but run."""
    gateway = await gateway_factory(fake_chat.target, max_inflight_requests=1)
    fake_chat.add_conversation("c1", "alice")
    fake_chat.history_delay_s = 0.2
    client = await GatewayClient.connect(gateway.url, token("alice"))
    sent = [client.frame("get_history", conversation_id="c1") for _ in range(3)]
    for frame in sent:
        await client.send(frame)
    for frame in sent:
        assert _kind(await client.answer(frame.request_id)) == "get_history"
    await client.close()


async def test_an_idle_socket_gives_back_its_writer_task(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """After a heartbeat interval without output the writer task ends; output restarts it."""
    gateway = await gateway_factory(chat.target, heartbeat_interval_s=0.2)
    client = await GatewayClient.connect(gateway.url, token("alice"))
    (session,) = gateway._context.sessions  # white-box: the writer is an internal
    await eventually(lambda: session._writer.task is None, timeout_s=3)
    assert _kind(await client.ping()) == "pong"
    await client.close()


async def test_a_channel_given_to_the_gateway_is_left_open(chat: Chat) -> None:
    """start_gateway(chat_channel=...) uses that channel and does not close it on stop."""
    from gateway_ws.server import start_gateway
    from tests.gateway.conftest import base_config

    channel = grpc.aio.insecure_channel(chat.target)
    gateway = await start_gateway(base_config(chat_target="unused:1"), chat_channel=channel)
    client = await GatewayClient.connect(gateway.url, token("alice"))
    cid = await client.create_group("bob")
    assert (await _send(client, cid, "via the given channel")).send_message.message.seq == 1
    await gateway.stop()
    await channel.channel_ready()
    await channel.close(None)


async def test_frames_are_counted_by_type_and_outcome(gateway: Gateway) -> None:
    """chatmesh_ws_frames_total{frame,outcome} counts each frame."""
    from chatmesh_common.metrics import WS_FRAMES

    def count() -> float:
        return float(WS_FRAMES.labels("ping", "ok")._value.get())

    before = count()
    client = await GatewayClient.connect(gateway.url, token("alice"))
    await client.ping()
    await client.ping()
    assert count() == before + 2
    await client.close()


def test_the_process_refuses_to_start_without_a_secret() -> None:
    """`python -m gateway_ws` exits with status 2 when CHATMESH_JWT_SECRET is missing."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CHATMESH_JWT_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway_ws"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "CHATMESH_JWT_SECRET" in done.stderr
