"""Presence and typing over the WebSocket, end to end against `chatmesh dev` (a subprocess).

alice and bob share a direct conversation; alice, bob and dave share a group, and alice blocked
dave; carol shares nothing with alice; mallory is in neither conversation.

Typing arrives in the event stream (`event` frames with `typing_changed`), with no presence
subscription; `typing_event` frames are never sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2 as ppb
from gateway.client import GatewayClient, ServerError

from chatmesh_common.auth import auth_metadata, issue_token

from .devprocess import SECRET, DevProcess

ONLINE = ppb.PRESENCE_STATE_ONLINE
OFFLINE = ppb.PRESENCE_STATE_OFFLINE
E = gateway_pb2.ErrorCode


def _token(user_id: str) -> str:
    return issue_token(SECRET, user_id, "phone")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    process = DevProcess(tmp_path_factory.mktemp("presence-ws") / "data")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class World:
    direct_id: str
    group_id: str


async def _world(dev: DevProcess, tag: str) -> World:
    """Fresh users per test (`tag` suffix), their conversations and alice's block of dave."""
    async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        alice = auth_metadata(_token(f"alice{tag}"))
        direct = await stub.CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=[f"bob{tag}"]
            ),
            metadata=alice,
        )
        group = await stub.CreateConversation(
            pb.CreateConversationRequest(
                kind=types_pb2.CONVERSATION_KIND_GROUP,
                title="g",
                member_ids=[f"bob{tag}", f"dave{tag}"],
            ),
            metadata=alice,
        )
        await stub.BlockUser(pb.BlockUserRequest(user_id=f"dave{tag}"), metadata=alice)
    return World(
        direct.conversation.conversation.conversation_id,
        group.conversation.conversation.conversation_id,
    )


def _pushed(client: GatewayClient, kind: str) -> list[gateway_pb2.ServerFrame]:
    return [f for f, _ in client.received if not f.request_id and f.WhichOneof("frame") == kind]


async def _wait_presence(
    client: GatewayClient, user_id: str, state: ppb.PresenceState, timeout_s: float = 10.0
) -> ppb.UserPresence:
    """Waits until the latest presence_event about `user_id` has `state`."""
    async with asyncio.timeout(timeout_s):
        while True:
            events = [f.presence_event for f in _pushed(client, "presence_event")]
            about = [e for e in events if e.user_id == user_id]
            if about and about[-1].state == state:
                return about[-1]
            await asyncio.sleep(0.02)


def _typing(client: GatewayClient) -> list[events_pb2.ConversationEvent]:
    """The typing signals pushed to the client so far (event frames with typing_changed)."""
    return [f.event for f in _pushed(client, "event") if f.event.HasField("typing_changed")]


async def _wait_typing(
    client: GatewayClient, conversation_id: str, user_id: str
) -> events_pb2.ConversationEvent:
    async with asyncio.timeout(10):
        while True:
            for event in _typing(client):
                if (event.conversation_id, event.typing_changed.user_id) == (
                    conversation_id,
                    user_id,
                ):
                    return event
            await asyncio.sleep(0.02)


async def _subscribe(client: GatewayClient, *user_ids: str) -> list[ppb.UserPresence]:
    answer = await client.call("presence_subscribe", user_ids=list(user_ids))
    return list(answer.presence_subscribe.presences)


async def test_presence_follows_the_socket_and_visibility(dev: DevProcess) -> None:
    """bob sees alice online while her socket is open and offline once it closes; carol (no
    shared conversation) and dave (blocked by alice) see her offline throughout."""
    await _world(dev, "1")
    bob = await GatewayClient.connect(dev.ws_url, _token("bob1"), binary=True)
    carol = await GatewayClient.connect(dev.ws_url, _token("carol1"))
    dave = await GatewayClient.connect(dev.ws_url, _token("dave1"))
    (before,) = await _subscribe(bob, "alice1")
    assert (before.user_id, before.state) == ("alice1", OFFLINE)

    alice = await GatewayClient.connect(dev.ws_url, _token("alice1"))
    online = await _wait_presence(bob, "alice1", ONLINE)
    assert not online.HasField("last_seen")
    assert bob.received[-1][1] is True  # pushed in the encoding of bob's last frame (binary)
    (answer,) = await _subscribe(bob, "alice1")  # subscribing again: the answer says online too
    assert answer.state == ONLINE

    for viewer in (carol, dave):
        (seen,) = await _subscribe(viewer, "alice1")
        assert seen.state == OFFLINE and not seen.HasField("last_seen")

    await alice.close()
    offline = await _wait_presence(bob, "alice1", OFFLINE)
    assert offline.HasField("last_seen")

    # Neither carol nor dave ever got alice online (the snapshot says offline, nothing since).
    await asyncio.sleep(0.3)
    for viewer in (carol, dave):
        states = {
            f.presence_event.state
            for f in _pushed(viewer, "presence_event")
            if f.presence_event.user_id == "alice1"
        }
        assert states <= {OFFLINE}, states
        assert not any(
            f.presence_event.HasField("last_seen") for f in _pushed(viewer, "presence_event")
        )

    # Unsubscribed: alice's next visit is not pushed to bob any more.
    await bob.call("presence_unsubscribe", user_ids=["alice1"])
    seen_before = len(_pushed(bob, "presence_event"))
    alice = await GatewayClient.connect(dev.ws_url, _token("alice1"))
    await asyncio.sleep(0.5)
    assert len(_pushed(bob, "presence_event")) == seen_before
    for client in (alice, bob, carol, dave):
        await client.close()


async def test_typing_reaches_members_only(dev: DevProcess) -> None:
    """alice's typing reaches bob in his event stream, though bob watches nobody's presence;
    carol (no shared conversation), dave (blocked by alice) and mallory (a non-member) get none;
    a non-member's typing is refused and their socket stays open."""
    world = await _world(dev, "2")
    alice = await GatewayClient.connect(dev.ws_url, _token("alice2"))
    bob = await GatewayClient.connect(dev.ws_url, _token("bob2"))
    carol = await GatewayClient.connect(dev.ws_url, _token("carol2"))
    dave = await GatewayClient.connect(dev.ws_url, _token("dave2"))
    mallory = await GatewayClient.connect(dev.ws_url, _token("mallory2"))
    # No presence_subscribe anywhere: each socket's event stream opened at authentication; the
    # resume is answered once the stream is live at chat_service, which is all typing needs.
    for client in (alice, bob, carol, dave, mallory):
        await client.resume({})

    sent = await alice.call("typing", conversation_id=world.direct_id, typing=True)
    assert sent.typing.HasField("expires_at")
    event = await _wait_typing(bob, world.direct_id, "alice2")
    assert (event.seq, event.actor_id) == (0, "alice2")
    assert (event.typing_changed.user_id, event.typing_changed.typing) == ("alice2", True)
    assert event.typing_changed.expires_at == sent.typing.expires_at

    # In the group bob gets it; dave, whom alice blocked, does not. bob's typing in the group
    # (sent after alice's) is the sentinel: once dave has it, alice's would have come before.
    await asyncio.sleep(0.6)  # stay under 2 signals per second
    await alice.call("typing", conversation_id=world.group_id, typing=True)
    await _wait_typing(bob, world.group_id, "alice2")
    await bob.call("typing", conversation_id=world.group_id, typing=True)
    await _wait_typing(dave, world.group_id, "bob2")
    await _wait_typing(alice, world.group_id, "bob2")
    await asyncio.sleep(0.3)
    assert [e.typing_changed.user_id for e in _typing(dave)] == ["bob2"]
    assert _typing(carol) == [] and _typing(mallory) == []
    assert all(e.typing_changed.user_id != "alice2" for e in _typing(alice))  # not to the typer
    for client in (alice, bob, carol, dave, mallory):
        assert _pushed(client, "typing_event") == []
        assert _pushed(client, "presence_event") == []

    with pytest.raises(ServerError) as refused:
        await mallory.call("typing", conversation_id=world.direct_id, typing=True)
    assert refused.value.code == E.ERROR_CODE_PERMISSION_DENIED
    assert (await mallory.ping()).WhichOneof("frame") == "pong"

    # Over 2 per second: RESOURCE_EXHAUSTED with a retry-after, like chat calls.
    codes: list[tuple[int, int]] = []
    for _ in range(5):
        answer = await alice.request(
            alice.frame("typing", conversation_id=world.direct_id, typing=True)
        )
        if answer.WhichOneof("frame") == "error":
            codes.append((answer.error.code, answer.error.retry_after_ms))
    assert codes and all(code == E.ERROR_CODE_RESOURCE_EXHAUSTED for code, _ in codes)
    assert all(retry > 0 for _, retry in codes)
    for client in (alice, bob, carol, dave, mallory):
        await client.close()


async def test_set_status_away_is_seen_by_watchers(dev: DevProcess) -> None:
    """set_status answers alice's own presence; bob's watch sees her away."""
    await _world(dev, "3")
    bob = await GatewayClient.connect(dev.ws_url, _token("bob3"))
    alice = await GatewayClient.connect(dev.ws_url, _token("alice3"))
    await _subscribe(bob, "alice3")
    await _wait_presence(bob, "alice3", ONLINE)
    answer = await alice.call("set_status", status="USER_STATUS_AWAY", custom_text="lunch")
    assert answer.set_status.presence.status == ppb.USER_STATUS_AWAY
    away = await _wait_presence(bob, "alice3", ppb.PRESENCE_STATE_AWAY)
    assert away.custom_text == "lunch"
    await alice.close()
    await bob.close()
