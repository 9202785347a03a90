"""Presence and typing over the WebSocket, end to end against `chatmesh dev` (a subprocess).

alice and bob share a direct conversation; alice, bob and dave share a group, and alice blocked
dave; carol shares nothing with alice; mallory is in neither conversation.

"Nothing arrives" is asserted once a later marker has arrived on the same stream (a presence
change or typing signal of a user in a side group, sent after the event that must not arrive),
never after a sleep.

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

from chatmesh_common.auth import auth_metadata, issue_token
from tests.gateway.client import GatewayClient, ServerError

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


async def _create(
    stub: chat_service_pb2_grpc.ChatServiceAsyncStub,
    owner: str,
    kind: types_pb2.ConversationKind,
    *member_ids: str,
) -> str:
    """The id of a conversation `owner` creates with `member_ids`."""
    title = "g" if kind == types_pb2.CONVERSATION_KIND_GROUP else ""
    answer = await stub.CreateConversation(
        pb.CreateConversationRequest(kind=kind, title=title, member_ids=list(member_ids)),
        metadata=auth_metadata(_token(owner)),
    )
    return answer.conversation.conversation.conversation_id


async def _world(dev: DevProcess, tag: str) -> World:
    """Fresh users per test (`tag` suffix), their conversations and alice's block of dave."""
    alice = f"alice{tag}"
    async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        direct = await _create(stub, alice, types_pb2.CONVERSATION_KIND_DIRECT, f"bob{tag}")
        group = await _create(
            stub, alice, types_pb2.CONVERSATION_KIND_GROUP, f"bob{tag}", f"dave{tag}"
        )
        await stub.BlockUser(
            pb.BlockUserRequest(user_id=f"dave{tag}"), metadata=auth_metadata(_token(alice))
        )
    return World(direct, group)


async def _side_group(dev: DevProcess, owner: str, *member_ids: str) -> str:
    """A group outside alice's world, whose members' presence and typing serve as markers."""
    async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        return await _create(stub, owner, types_pb2.CONVERSATION_KIND_GROUP, *member_ids)


def _pushed(client: GatewayClient, kind: str) -> list[gateway_pb2.ServerFrame]:
    return [f for f, _ in client.received if not f.request_id and f.WhichOneof("frame") == kind]


def _about(client: GatewayClient, user_id: str) -> list[ppb.UserPresence]:
    """The presence_events about `user_id` pushed to the client so far (snapshots included)."""
    events = [f.presence_event for f in _pushed(client, "presence_event")]
    return [e for e in events if e.user_id == user_id]


async def _wait_presence(
    client: GatewayClient, user_id: str, state: ppb.PresenceState, timeout_s: float = 10.0
) -> ppb.UserPresence:
    """Waits until the latest presence_event about `user_id` has `state`."""
    async with asyncio.timeout(timeout_s):
        while True:
            about = _about(client, user_id)
            if about and about[-1].state == state:
                return about[-1]
            await asyncio.sleep(0.02)


async def _wait_more(client: GatewayClient, user_id: str, than: int) -> None:
    """Waits until more than `than` presence_events about `user_id` have been pushed."""
    async with asyncio.timeout(10):
        while True:
            if len(_about(client, user_id)) > than:
                return
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


async def _subscribe(client: GatewayClient, *user_ids: str) -> dict[str, ppb.UserPresence]:
    answer = await client.call("presence_subscribe", user_ids=list(user_ids))
    return {p.user_id: p for p in answer.presence_subscribe.presences}


async def test_presence_follows_the_socket_and_visibility(dev: DevProcess) -> None:
    """bob sees alice online while her socket is open and offline once it closes; carol (no
    shared conversation) and dave (blocked by alice) see her offline throughout.

    mark shares a side group with bob, carol and dave, and each of them watches mark along with
    alice: mark's changes, made after alice's, are the markers."""
    await _world(dev, "1")
    await _side_group(dev, "mark1", "bob1", "carol1", "dave1")
    bob = await GatewayClient.connect(dev.ws_url, _token("bob1"), binary=True)
    carol = await GatewayClient.connect(dev.ws_url, _token("carol1"))
    dave = await GatewayClient.connect(dev.ws_url, _token("dave1"))
    before = (await _subscribe(bob, "alice1", "mark1"))["alice1"]
    assert before.state == OFFLINE

    alice = await GatewayClient.connect(dev.ws_url, _token("alice1"))
    online = await _wait_presence(bob, "alice1", ONLINE)
    assert not online.HasField("last_seen")
    assert bob.received[-1][1] is True  # pushed in the encoding of bob's last frame (binary)
    answer = await _subscribe(bob, "alice1")  # subscribing again: the answer says online too
    assert answer["alice1"].state == ONLINE

    for viewer in (carol, dave):
        seen = (await _subscribe(viewer, "alice1", "mark1"))["alice1"]
        assert seen.state == OFFLINE and not seen.HasField("last_seen")

    await alice.close()
    offline = await _wait_presence(bob, "alice1", OFFLINE)
    assert offline.HasField("last_seen")

    # Neither carol nor dave ever got alice online (the snapshot says offline, nothing since):
    # mark comes online after alice left, so anything about her would have come before him.
    mark = await GatewayClient.connect(dev.ws_url, _token("mark1"))
    for viewer in (bob, carol, dave):
        await _wait_presence(viewer, "mark1", ONLINE)
    for viewer in (carol, dave):
        about_alice = _about(viewer, "alice1")
        assert {e.state for e in about_alice} <= {OFFLINE}, about_alice
        assert not any(e.HasField("last_seen") for e in about_alice)

    # Unsubscribed: alice's next visit is not pushed to bob any more. bob's watch restarts with
    # mark alone; its snapshot of mark shows the new watch runs and the old one (with alice) is
    # gone. bob's tablet still watches alice and shows her visit was published; mark leaving
    # after that is bob's marker.
    tablet = await GatewayClient.connect(dev.ws_url, issue_token(SECRET, "bob1", "tablet"))
    await _subscribe(tablet, "alice1")
    marks_before = len(_about(bob, "mark1"))
    await bob.call("presence_unsubscribe", user_ids=["alice1"])
    await _wait_more(bob, "mark1", than=marks_before)
    seen_before = len(_pushed(bob, "presence_event"))
    alice = await GatewayClient.connect(dev.ws_url, _token("alice1"))
    await _wait_presence(tablet, "alice1", ONLINE)
    await mark.close()
    await _wait_presence(bob, "mark1", OFFLINE)
    since = [f.presence_event for f in _pushed(bob, "presence_event")[seen_before:]]
    assert [(e.user_id, e.state) for e in since] == [("mark1", OFFLINE)]
    for client in (alice, bob, carol, dave, tablet):
        await client.close()


async def test_typing_reaches_members_only(dev: DevProcess) -> None:
    """alice's typing reaches bob in his event stream, though bob watches nobody's presence;
    carol (no shared conversation), dave (blocked by alice) and mallory (a non-member) get none;
    a non-member's typing is refused and their socket stays open."""
    world = await _world(dev, "2")
    # carol's and mallory's typing in a group of their own, sent after alice's and bob's, is
    # each one's marker.
    side = await _side_group(dev, "carol2", "mallory2")
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
    for marker in (carol, mallory):
        await marker.call("typing", conversation_id=side, typing=True)
    await _wait_typing(carol, side, "mallory2")
    await _wait_typing(mallory, side, "carol2")
    assert [e.typing_changed.user_id for e in _typing(dave)] == ["bob2"]
    for client, other in ((carol, "mallory2"), (mallory, "carol2")):
        got = [(e.conversation_id, e.typing_changed.user_id) for e in _typing(client)]
        assert got == [(side, other)]
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
