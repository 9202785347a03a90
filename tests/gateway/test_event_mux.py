"""Sockets' event streams multiplexed on calls to the real chat_service (event_mux.py); most
tests put every socket on one call (`event_calls=1`), the sharing they are about.

Many devices share the call; each socket's stream keeps its own resume, gap filling and
slow-consumer rule; the call breaking makes every socket resubscribe with no gap; a gateway set
to `per_device`, or in front of a service without the call, opens a stream per socket.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway_ws.event_mux import EventMux
from gateway_ws.server import Gateway
from tests.gateway.client import GatewayClient, eventually
from tests.gateway.conftest import Chat, GatewayFactory, token
from tests.gateway.fake_chat import FakeChat

pytestmark = pytest.mark.timeout(90)


def _mux(gateway: Gateway) -> EventMux:
    assert gateway.event_mux is not None, "the gateway should multiplex event streams"
    return gateway.event_mux


async def _send(client: GatewayClient, conversation_id: str, body: str) -> int:
    answer = await client.call(
        "send_message",
        conversation_id=conversation_id,
        client_msg_id=client.next_request_id(),
        body=body,
    )
    return int(answer.send_message.message.seq)


async def _message_seqs(client: GatewayClient, conversation_id: str, count: int) -> list[int]:
    """The seqs of the next `count` new messages of the conversation (other events skipped)."""
    seqs: list[int] = []
    while len(seqs) < count:
        event = await client.next_event(timeout_s=20)
        if event.conversation_id == conversation_id and event.HasField("message_created"):
            seqs.append(int(event.seq))
    return seqs


async def test_many_devices_share_one_call_and_each_gets_its_events(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """Five sockets of three users: one shared call, each socket gets every message once."""
    gateway = await gateway_factory(chat.target, event_calls=1)
    alice = await GatewayClient.connect(gateway.url, token("alice", "phone"))
    others = [
        await GatewayClient.connect(gateway.url, token(user, device))
        for user, device in [("alice", "laptop"), ("bob", "phone"), ("bob", "tab"), ("carol", "p")]
    ]
    for client in others:
        await client.ping()  # starts the live stream
    await eventually(lambda: _mux(gateway).open_streams == 5, timeout_s=10)
    conversation_id = await alice.create_group("bob", "carol")
    sent = [await _send(alice, conversation_id, f"m{n}") for n in range(5)]
    for client in others:
        assert await _message_seqs(client, conversation_id, 5) == sent
    for client in [alice, *others]:
        await client.close()
    await eventually(lambda: _mux(gateway).open_streams == 0, timeout_s=10)


async def test_a_closed_socket_closes_only_its_stream(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """One socket closing sends Close for its stream alone; the others keep receiving."""
    gateway = await gateway_factory(chat.target, event_calls=1)
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    bob = await GatewayClient.connect(gateway.url, token("bob"))
    carol = await GatewayClient.connect(gateway.url, token("carol"))
    await bob.ping()
    await carol.ping()
    conversation_id = await alice.create_group("bob", "carol")
    await eventually(lambda: _mux(gateway).open_streams == 3, timeout_s=10)
    await bob.close()
    await eventually(lambda: _mux(gateway).open_streams == 2, timeout_s=10)
    seq = await _send(alice, conversation_id, "after bob left")
    assert await _message_seqs(carol, conversation_id, 1) == [seq]
    await alice.close()
    await carol.close()


async def test_the_call_breaking_resumes_every_socket_with_no_gap(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """The shared call cut: every socket resubscribes from what it delivered; messages sent
    while no stream was open arrive in order, none missing, none twice."""
    gateway = await gateway_factory(chat.target, resubscribe_initial_s=0.5, event_calls=1)
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    devices = [
        await GatewayClient.connect(gateway.url, token(user, device))
        for user, device in [("bob", "phone"), ("bob", "tab"), ("carol", "phone")]
    ]
    conversation_id = await alice.create_group("bob", "carol")
    for device in devices:
        await device.resume({conversation_id: 0})
        device.pending_events()
    before = [await _send(alice, conversation_id, f"before {n}") for n in range(3)]
    for device in devices:
        assert await _message_seqs(device, conversation_id, 3) == before
    mux = _mux(gateway)
    broken = mux.live_calls  # white-box: the calls to break
    assert broken
    await asyncio.gather(*(call.cancel() for call in broken))
    # Sent while every stream is down (the resubscribe waits at least its backoff).
    during = [await _send(alice, conversation_id, f"during {n}") for n in range(3)]
    await eventually(lambda: mux.open_streams >= len(devices), timeout_s=20)
    assert not set(mux.live_calls) & set(broken)
    after = [await _send(alice, conversation_id, f"after {n}") for n in range(3)]
    for device in devices:
        assert await _message_seqs(device, conversation_id, 6) == during + after
        await asyncio.sleep(0.2)
        assert not [e for e in device.pending_events() if e.HasField("message_created")]
    for client in [alice, *devices]:
        await client.close()


async def test_a_stalled_socket_is_cut_off_while_others_on_the_call_keep_up(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """A socket that reads nothing is closed with 4008; another on the same call gets every
    message meanwhile: the shared call never waits on one socket."""
    gateway = await gateway_factory(
        chat.target,
        event_calls=1,
        outbound_queue_max=8,
        send_stall_timeout_s=1.0,
        # The close frame waits behind what the kernel buffers hold until the test reads again.
        close_timeout_s=60.0,
        send_rate_per_s=10_000.0,
        send_burst=10_000,
    )
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    carol = await GatewayClient.connect(gateway.url, token("carol"))
    conversation_id = await alice.create_group("bob", "carol")
    stalled = await connect(
        gateway.url,
        subprotocols=["chatmesh.v1", f"bearer.{token('bob')}"],  # type: ignore[list-item]
        max_queue=1,
        max_size=None,
    )
    assert "ready" in str(await stalled.recv())
    await stalled.send('{"requestId":"p","ping":{}}')  # starts the live stream
    assert "pong" in str(await stalled.recv())
    await carol.ping()
    await eventually(lambda: _mux(gateway).open_streams == 3, timeout_s=10)
    stalled.transport.pause_reading()
    body = "x" * 15_000
    count = 600  # ~9 MB: more than the kernel buffers on both ends take

    async def sends() -> list[int]:
        return [await _send(alice, conversation_id, f"{n}:{body}") for n in range(count)]

    sent, got = await asyncio.gather(sends(), _message_seqs(carol, conversation_id, count))
    assert got == sent
    stalled.transport.resume_reading()
    with pytest.raises(ConnectionClosed) as caught:
        async with asyncio.timeout(20):
            while True:
                await stalled.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 4008
    await alice.close()
    await carol.close()


async def test_sockets_spread_over_the_calls_in_turn(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """With 3 calls, 6 sockets take them in turn (2 each); each socket gets its messages."""
    gateway = await gateway_factory(chat.target, event_calls=3)
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    devices = [await GatewayClient.connect(gateway.url, token("bob", f"d{n}")) for n in range(5)]
    conversation_id = await alice.create_group("bob")
    for client in [alice, *devices]:
        await client.resume({conversation_id: 0})
        client.pending_events()
    mux = _mux(gateway)
    await eventually(lambda: mux.open_streams == 6, timeout_s=10)
    assert sorted(len(call.streams) for call in mux.live_calls) == [2, 2, 2]
    sent = [await _send(alice, conversation_id, f"m{n}") for n in range(3)]
    for device in devices:
        assert await _message_seqs(device, conversation_id, 3) == sent
    for client in [alice, *devices]:
        await client.close()


async def test_per_device_streams_when_configured(
    chat: Chat, gateway_factory: GatewayFactory
) -> None:
    """CHATMESH_WS_EVENT_STREAMS=per_device: no shared call; events still arrive."""
    gateway = await gateway_factory(chat.target, event_streams="per_device")
    assert gateway.event_mux is None
    alice = await GatewayClient.connect(gateway.url, token("alice"))
    bob = await GatewayClient.connect(gateway.url, token("bob"))
    await bob.ping()
    conversation_id = await alice.create_group("bob")
    seq = await _send(alice, conversation_id, "hi")
    assert await _message_seqs(bob, conversation_id, 1) == [seq]
    await alice.close()
    await bob.close()


async def test_a_service_without_the_call_gets_a_stream_per_socket(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """UNIMPLEMENTED (an older chat_service): multiplexing turns off and the socket
    resubscribes with a stream of its own."""
    gateway = await gateway_factory(fake_chat.target, resubscribe_initial_s=0.05)
    client = await GatewayClient.connect(gateway.url, token("bob"))
    await client.ping()
    await fake_chat.wait_streams(1)
    assert not _mux(gateway).supported
    await client.close()
