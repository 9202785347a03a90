"""Presence and typing frames: translation without sockets, and the gateway with presence off."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import grpc
import pytest
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2 as ppb

from gateway_ws import frames
from gateway_ws.config import GatewayConfig
from gateway_ws.presence_link import heartbeat_loop, validate_user_ids
from gateway_ws.server import Gateway
from gateway_ws.session import Session
from gateway_ws.upstream import build_routes
from tests.gateway.client import GatewayClient
from tests.gateway.conftest import GatewayFactory, token
from tests.gateway.fake_chat import FakeChat

E = gateway_pb2.ErrorCode


def _frame(result: gateway_pb2.ClientFrame | frames.FrameError) -> gateway_pb2.ClientFrame:
    assert isinstance(result, gateway_pb2.ClientFrame), f"expected a frame, got {result}"
    return result


# -- decoding ----------------------------------------------------------------------------------


def test_presence_subscribe_decodes_from_json() -> None:
    """presenceSubscribe / presence_subscribe carry a list of user ids."""
    for key in ("presenceSubscribe", "presence_subscribe"):
        text = json.dumps({"requestId": "p1", key: {"userIds": ["alice", "bob"]}})
        frame = _frame(frames.decode_client_frame(text))
        assert frame.WhichOneof("frame") == "presence_subscribe"
        assert list(frame.presence_subscribe.user_ids) == ["alice", "bob"]


def test_presence_unsubscribe_set_status_and_typing_decode_from_json() -> None:
    """The other presence frames reuse presence_service's request messages."""
    unsubscribe = _frame(
        frames.decode_client_frame('{"requestId":"u","presenceUnsubscribe":{"userIds":["a"]}}')
    )
    assert list(unsubscribe.presence_unsubscribe.user_ids) == ["a"]
    status = _frame(
        frames.decode_client_frame(
            '{"requestId":"s","setStatus":{"status":"USER_STATUS_AWAY","customText":"lunch"}}'
        )
    )
    assert status.set_status == ppb.SetStatusRequest(
        status=ppb.USER_STATUS_AWAY, custom_text="lunch"
    )
    typing = _frame(
        frames.decode_client_frame(
            '{"requestId":"t","typing":{"conversationId":"c1","typing":true}}'
        )
    )
    assert typing.typing == ppb.SendTypingRequest(conversation_id="c1", typing=True)


def test_presence_frames_decode_from_binary() -> None:
    """Fields 40-43 of ClientFrame."""
    frame = gateway_pb2.ClientFrame(request_id="b")
    frame.typing.conversation_id = "c1"
    frame.typing.typing = True
    assert _frame(frames.decode_client_frame(frame.SerializeToString())) == frame
    assert frame.DESCRIPTOR.fields_by_name["typing"].number == 43


def test_unknown_field_of_a_presence_frame_is_named() -> None:
    """Unknown nested fields are refused with their path, like any other frame."""
    result = frames.decode_client_frame('{"requestId":"x","typing":{"conversation":"c1"}}')
    assert isinstance(result, frames.FrameError)
    assert (result.reason, result.request_id) == (frames.UNKNOWN_FIELD, "x")
    assert "typing.conversation" in result.message


def test_user_ids_are_checked_with_their_index() -> None:
    """Empty or too-long ids are named by position; good ids pass."""
    assert validate_user_ids(["alice", "bob"], "p.user_ids") is None
    assert (
        validate_user_ids(["alice", ""], "p.user_ids")
        == "p.user_ids[1] must be 1 to 128 characters"
    )
    assert validate_user_ids(["x" * 129], "p.user_ids") is not None


# -- encoding ----------------------------------------------------------------------------------


def _presence_item() -> ppb.WatchResponse:
    item = ppb.WatchResponse()
    item.presence.user_id = "alice"
    item.presence.state = ppb.PRESENCE_STATE_ONLINE
    item.presence.custom_text = "hi"
    return item


def _typing_item() -> ppb.WatchResponse:
    item = ppb.WatchResponse()
    item.typing.conversation_id = "c1"
    item.typing.user_id = "alice"
    item.typing.typing = True
    item.typing.expires_at.FromSeconds(1_700_000_000)
    return item


@pytest.mark.parametrize("binary", [False, True])
def test_watch_presence_items_become_presence_events(binary: bool) -> None:
    """A Watch presence item is a pushed presence_event frame."""
    presence = frames.encode_watch_response(_presence_item(), binary)
    assert presence is not None
    assert isinstance(presence, bytes) is binary
    decoded = frames.decode_server_frame(presence)
    assert decoded.request_id == ""
    assert decoded.WhichOneof("frame") == "presence_event"
    assert decoded.presence_event == _presence_item().presence


def test_a_watch_typing_item_is_dropped() -> None:
    """Typing arrives in the event stream now: a Watch typing item (an older presence_service)
    becomes no frame, so the gateway never sends typing_event."""
    assert frames.encode_watch_response(_typing_item(), False) is None
    assert frames.encode_watch_response(_typing_item(), True) is None


@pytest.mark.parametrize("binary", [False, True])
def test_typing_from_the_event_stream_is_an_event_frame(binary: bool) -> None:
    """A ConversationEvent with typing_changed is pushed as an ordinary `event` frame."""
    event = events_pb2.ConversationEvent(conversation_id="c1", actor_id="alice")
    event.occurred_at.FromSeconds(1_699_999_994)
    event.typing_changed.user_id = "alice"
    event.typing_changed.typing = True
    event.typing_changed.expires_at.FromSeconds(1_700_000_000)
    data = frames.EventFrames().encode(event, binary)
    decoded = frames.decode_server_frame(data)
    assert decoded.request_id == ""
    assert decoded.WhichOneof("frame") == "event"
    assert decoded.event == event
    if not binary:
        assert isinstance(data, str)
        assert json.loads(data)["event"]["typingChanged"] == {
            "userId": "alice",
            "typing": True,
            "expiresAt": "2023-11-14T22:13:20Z",
        }


def test_presence_event_json_uses_camel_case_and_enum_names() -> None:
    """Pushed presence is proto3 JSON like every other frame."""
    text = frames.encode_watch_response(_presence_item(), False)
    assert isinstance(text, str)
    assert json.loads(text) == {
        "presenceEvent": {"userId": "alice", "state": "PRESENCE_STATE_ONLINE", "customText": "hi"}
    }


def test_an_empty_watch_item_is_dropped() -> None:
    """An item of a kind this gateway does not know (a newer presence_service) is skipped."""
    assert frames.encode_watch_response(ppb.WatchResponse(), False) is None


def test_presence_answers_have_server_slots() -> None:
    """Every presence ClientFrame case has a ServerFrame case of the same name, and the pushes."""
    for name in ("presence_subscribe", "presence_unsubscribe", "set_status", "typing"):
        assert name in frames.SERVER_SLOTS
    assert frames.SERVER_SLOTS["set_status"].message_class is ppb.SetStatusResponse
    assert frames.SERVER_SLOTS["typing"].message_class is ppb.SendTypingResponse
    assert frames.SERVER_SLOTS["presence_event"].message_class is ppb.UserPresence
    # Kept in the protocol (older clients parse it) though no longer sent.
    assert frames.SERVER_SLOTS["typing_event"].message_class is ppb.TypingEvent


async def test_presence_frames_are_not_chat_routes() -> None:
    """The chat route table skips the presence frames (they go to presence_service)."""
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        routes = build_routes(channel)
    finally:
        await channel.close(None)
    assert "send_message" in routes
    assert not {"presence_subscribe", "presence_unsubscribe", "set_status", "typing"} & set(routes)


# -- configuration and a gateway without presence ----------------------------------------------


def test_presence_target_comes_from_the_environment() -> None:
    """CHATMESH_PRESENCE_TARGET; unset means presence is disabled."""
    assert GatewayConfig.from_env({"CHATMESH_JWT_SECRET": "s"}).presence_target == ""
    config = GatewayConfig.from_env(
        {"CHATMESH_JWT_SECRET": "s", "CHATMESH_PRESENCE_TARGET": " presence:50052 "}
    )
    assert config.presence_target == "presence:50052"
    assert config.max_presence_subscriptions == 500


async def test_without_presence_target_presence_frames_are_unimplemented(
    gateway: Gateway,
) -> None:
    """Each presence frame answers UNIMPLEMENTED with a clear message; the socket stays open."""
    client = await GatewayClient.connect(gateway.url, token("alice"))
    requests = [
        client.frame("presence_subscribe", user_ids=["bob"]),
        client.frame("presence_unsubscribe", user_ids=["bob"]),
        client.frame("set_status", status="USER_STATUS_AWAY"),
        client.frame("typing", conversation_id="c1", typing=True),
    ]
    for frame in requests:
        answer = await client.request(frame)
        assert answer.error.code == E.ERROR_CODE_UNIMPLEMENTED, frame
        assert "not enabled" in answer.error.message
    assert (await client.ping()).WhichOneof("frame") == "pong"
    await client.close()


async def test_unreachable_presence_never_closes_the_socket(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """Presence down: Connect fails quietly, presence frames answer UNAVAILABLE, chat works."""
    gateway = await gateway_factory(fake_chat.target, presence_target="127.0.0.1:1")
    client = await GatewayClient.connect(gateway.url, token("alice"))
    answer = await client.request(
        client.frame("typing", conversation_id="c1", typing=True), timeout_s=20
    )
    assert answer.error.code in (E.ERROR_CODE_UNAVAILABLE, E.ERROR_CODE_DEADLINE_EXCEEDED)
    answer = await client.request(client.frame("presence_subscribe", user_ids=[""]))
    assert answer.error.code == E.ERROR_CODE_INVALID_ARGUMENT
    assert "presence_subscribe.user_ids[0]" in answer.error.message
    answer = await client.request(client.frame("presence_unsubscribe", user_ids=["bob"]))
    assert answer.WhichOneof("frame") == "presence_unsubscribe"
    assert (await client.ping()).WhichOneof("frame") == "pong"
    await client.close()


async def test_presence_subscribe_is_limited_per_socket(
    fake_chat: FakeChat, gateway_factory: GatewayFactory
) -> None:
    """More than max_presence_subscriptions users is INVALID_ARGUMENT, checked before any call."""
    gateway = await gateway_factory(
        fake_chat.target, presence_target="127.0.0.1:1", max_presence_subscriptions=3
    )
    client = await GatewayClient.connect(gateway.url, token("alice"))
    answer = await client.request(client.frame("presence_subscribe", user_ids=["a", "b", "c", "d"]))
    assert answer.error.code == E.ERROR_CODE_INVALID_ARGUMENT
    assert "at most 3" in answer.error.message
    await client.close()


# -- the gateway-wide heartbeat loop -----------------------------------------------------------


class _FakeSession:
    def __init__(self, due: bool) -> None:
        self.due = due
        self.beats = 0

    def presence_heartbeat_due(self, now: float) -> bool:
        return self.due

    def start_presence_heartbeat(self) -> asyncio.Task[None]:
        self.due = False
        self.beats += 1
        return asyncio.get_running_loop().create_task(asyncio.sleep(0))


async def test_one_heartbeat_loop_beats_only_due_sockets_in_batches() -> None:
    """One task for the whole gateway: due sockets get one heartbeat each, the rest none."""
    due = [_FakeSession(True) for _ in range(5)]
    idle = [_FakeSession(False) for _ in range(3)]
    sessions = cast("list[Session]", [*due, *idle])
    loop = asyncio.get_running_loop()
    task = loop.create_task(heartbeat_loop(sessions, loop.time, tick_s=0.01, batch=2))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [s.beats for s in due] == [1] * 5
    assert [s.beats for s in idle] == [0] * 3
