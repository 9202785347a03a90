"""The per-socket protocol (gateway_ws/protocol.py) with no socket, no server and no sleep.

Each test feeds a `Protocol` client messages, stream items, stream ends, RPC results and clock
ticks, and checks the actions it answers with. A manual clock drives every timer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc
import pytest
from chatmesh.events.v1 import event_service_pb2
from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format

from chatmesh_common.auth import TokenVerifier, issue_token
from chatmesh_common.clock import ManualClock
from gateway_ws import frames
from gateway_ws.metrics import FrameMetrics
from gateway_ws.protocol import (
    Action,
    Authenticated,
    AuthFailed,
    CallPresence,
    CallRpc,
    Close,
    OpenStream,
    Protocol,
    Send,
)
from gateway_ws.ratelimit import RateLimiter
from gateway_ws.upstream import Route, build_routes
from tests.gateway.conftest import SECRET, base_config

E = gateway_pb2.ErrorCode
StreamItem = event_service_pb2.SubscribeEventsResponse


class _Unconnected:
    """Stands in for the chat channel when building routes: the protocol never calls one."""

    def unary_unary(self, method: str, **_kwargs: Any) -> str:
        return method


ROUTES: dict[str, Route] = build_routes(cast(grpc.aio.Channel, _Unconnected()))


class Socket:
    """One protocol instance, its clock and the frames it has written so far."""

    def __init__(self, presence: bool = False, **overrides: Any) -> None:
        self.clock = ManualClock()
        config = base_config(**overrides)
        self.protocol = Protocol(
            config,
            self.clock,
            TokenVerifier(SECRET, clock=self.clock.now),
            RateLimiter(config.send_rate_per_s, config.send_burst, self.clock.monotonic),
            ROUTES,
            FrameMetrics(),
            frames.EventFrames(),
            presence=presence,
            jitter=lambda: 1.0,  # the longest backoff of each round, for exact deadlines
        )
        self.written: list[gateway_pb2.ServerFrame] = []
        self.actions: list[Action] = []

    def token(self, user_id: str = "alice", device_id: str = "phone", ttl_s: int = 3600) -> str:
        return issue_token(SECRET, user_id, device_id, ttl_s=ttl_s, now=self.clock.now())

    def _take(self, actions: list[Action]) -> list[Action]:
        self.actions.extend(actions)
        for action in actions:
            if isinstance(action, Send):
                assert isinstance(action.data, str)
                self.written.append(json_format.Parse(action.data, gateway_pb2.ServerFrame()))
        return actions

    def open(self, token: str | None = None) -> list[Action]:
        """Opens the socket, with `token` offered as `bearer.<token>` when given."""
        offered = [frames.SUBPROTOCOL] + ([f"bearer.{token}"] if token is not None else [])
        return self._take(self.protocol.start(offered))

    def authenticated(self) -> OpenStream:
        """Opens the socket with a good header token; returns the stream opened at once."""
        actions = self.open(self.token())
        (stream,) = [a for a in actions if isinstance(a, OpenStream)]
        self.written.clear()
        return stream

    def send(self, request_id: str, **frame: Any) -> list[Action]:
        message = gateway_pb2.ClientFrame(request_id=request_id)
        json_format.ParseDict(frame, message)
        return self.receive(json_format.MessageToJson(message))

    def receive(self, message: str | bytes) -> list[Action]:
        return self._take(self.protocol.receive(message))

    def item(self, stream: OpenStream | int, item: StreamItem) -> list[Action]:
        generation = stream if isinstance(stream, int) else stream.generation
        return self._take(self.protocol.stream_item(generation, item))

    def ended(self, stream: OpenStream, status: grpc.StatusCode | None) -> list[Action]:
        return self._take(self.protocol.stream_ended(stream.generation, status, "test"))

    def advance(self, seconds: float) -> list[Action]:
        """Moves the clock and runs what fell due."""
        self.clock.advance(seconds)
        return self._take(self.protocol.tick())

    def kinds(self) -> list[str]:
        return [str(f.WhichOneof("frame")) for f in self.written]

    def events(self) -> list[tuple[str, int]]:
        return [(f.event.conversation_id, f.event.seq) for f in self.written if f.HasField("event")]


def event(conversation_id: str, seq: int, body: str = "hi") -> StreamItem:
    item = StreamItem()
    item.event.conversation_id = conversation_id
    item.event.seq = seq
    if seq:
        item.event.message_created.message.body = body
    else:
        item.event.receipt_moved.user_id = "bob"
    return item


def caught_up(baselines: dict[str, int] | None = None, revoked: Iterable[str] = ()) -> StreamItem:
    item = StreamItem()
    item.caught_up.revoked_conversation_ids.extend(revoked)
    for conversation_id, seq in (baselines or {}).items():
        item.caught_up.baselines.add(conversation_id=conversation_id, seq=seq)
    return item


def cursors(stream: OpenStream) -> dict[str, int]:
    return {c.conversation_id: c.seq for c in stream.request.cursors}


def opened(actions: list[Action]) -> OpenStream:
    (stream,) = [a for a in actions if isinstance(a, OpenStream)]
    return stream


def closes(actions: list[Action]) -> list[Close]:
    return [a for a in actions if isinstance(a, Close)]


# -- authentication ------------------------------------------------------------------------------


def test_a_header_token_answers_ready_and_opens_the_stream_at_once() -> None:
    """`bearer.<token>`: Authenticated, `ready`, and an event stream with no cursors."""
    socket = Socket()
    actions = socket.open(socket.token())
    assert isinstance(actions[0], Authenticated) and actions[0].identity.user_id == "alice"
    assert socket.kinds() == ["ready"]
    stream = opened(actions)
    assert (stream.generation, cursors(stream), stream.request.device_id) == (1, {}, "phone")


def test_no_auth_frame_within_the_auth_timeout_closes_with_1008() -> None:
    """Without a token the socket waits auth_timeout_s for `auth`, then errors and closes."""
    socket = Socket(auth_timeout_s=10.0)
    assert socket.open() == []
    assert socket.advance(9.9) == []
    actions = socket.advance(0.1)
    assert socket.written[0].error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert closes(actions) == [Close(1008, "auth timeout", True)]
    assert socket.protocol.next_deadline() is None


def test_an_auth_frame_in_time_cancels_the_auth_timeout() -> None:
    """`auth` answered by `ready` (same request id); the timeout is gone, the stream opened."""
    socket = Socket()
    socket.open()
    socket.clock.advance(5.0)
    actions = socket.send("a1", auth={"token": socket.token()})
    assert [(f.request_id, f.WhichOneof("frame")) for f in socket.written] == [("a1", "ready")]
    assert opened(actions).generation == 1
    assert closes(socket.advance(20.0)) == []


def test_a_frame_before_auth_is_refused_and_the_socket_stays_open() -> None:
    """A request before `auth` gets ERROR_CODE_UNAUTHENTICATED with its request id."""
    socket = Socket()
    socket.open()
    actions = socket.send("p1", ping={})
    assert closes(actions) == []
    assert (socket.written[0].request_id, socket.written[0].error.code) == (
        "p1",
        E.ERROR_CODE_UNAUTHENTICATED,
    )


def test_a_bad_token_is_refused_with_1008() -> None:
    """A token that does not verify: error, the failure counted, then a close (flushed)."""
    socket = Socket()
    actions = socket.open("not-a-token")
    assert socket.written[0].error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert [type(a) for a in actions] == [Send, AuthFailed, Close]
    assert closes(actions)[0].code == 1008


def test_a_later_auth_frame_for_another_user_is_a_bad_frame() -> None:
    """Renewing the token keeps the identity: another user's token is INVALID_ARGUMENT."""
    socket = Socket()
    socket.authenticated()
    socket.send("a2", auth={"token": socket.token("mallory")})
    assert socket.written[-1].error.code == E.ERROR_CODE_INVALID_ARGUMENT
    actions = socket.send("a3", auth={"token": socket.token()})
    assert [a.first for a in actions if isinstance(a, Authenticated)] == [False]
    assert socket.written[-1].HasField("ready")


# -- abuse and rate limits ---------------------------------------------------------------------


def test_ten_bad_frames_within_the_window_close_with_1008() -> None:
    """The tenth bad frame within bad_frame_window_s closes the socket, after its error."""
    socket = Socket()
    socket.authenticated()
    for _ in range(9):
        assert closes(socket.receive("{not json")) == []
    actions = socket.receive("{not json")
    assert closes(actions) == [Close(1008, "too many bad frames", True)]
    assert socket.receive('{"requestId":"p","ping":{}}') == []


def test_bad_frames_spread_beyond_the_window_are_not_abuse() -> None:
    """Ten bad frames over more than the window leave the socket open."""
    socket = Socket(bad_frame_window_s=10.0)
    socket.authenticated()
    for _ in range(10):
        assert closes(socket.receive("{not json")) == []
        socket.clock.advance(1.5)


def test_sends_over_the_rate_limit_answer_resource_exhausted_until_tokens_refill() -> None:
    """Burst 2 at 1/s: the third send is refused with retry_after_ms; a second later it runs."""
    socket = Socket(send_rate_per_s=1.0, send_burst=2)
    socket.authenticated()
    body = {"conversationId": "c1", "clientMsgId": "m", "body": "x"}
    for n in range(2):
        calls = [a for a in socket.send(f"s{n}", sendMessage=body) if isinstance(a, CallRpc)]
        assert [c.route.frame for c in calls] == ["send_message"]
    assert not [a for a in socket.send("s2", sendMessage=body) if isinstance(a, CallRpc)]
    refused = socket.written[-1]
    assert (refused.request_id, refused.error.code) == ("s2", E.ERROR_CODE_RESOURCE_EXHAUSTED)
    assert refused.error.retry_after_ms == 1000
    socket.clock.advance(1.0)
    assert [a for a in socket.send("s3", sendMessage=body) if isinstance(a, CallRpc)]


# -- requests --------------------------------------------------------------------------------------


def test_a_routed_frame_becomes_an_rpc_whose_answer_is_framed_with_its_request_id() -> None:
    """get_history -> CallRpc; rpc_done frames the answer in the ServerFrame case of that name."""
    socket = Socket()
    socket.authenticated()
    (call,) = [
        a for a in socket.send("h1", getHistory={"conversationId": "c1"}) if isinstance(a, CallRpc)
    ]
    assert call.request_id == "h1"
    answer = gateway_pb2.ServerFrame()
    answer.get_history.last_seq = 7
    socket._take(socket.protocol.rpc_done(call, answer.get_history.SerializeToString()))
    assert (socket.written[-1].request_id, socket.written[-1].get_history.last_seq) == ("h1", 7)


def test_a_failed_rpc_answers_an_error_with_the_status_and_retry_after() -> None:
    """rpc_failed: the gRPC status as ErrorCode, the details as message, the retry-after."""
    socket = Socket()
    socket.authenticated()
    actions = socket.send("h1", getHistory={"conversationId": "c1"})
    (call,) = [a for a in actions if isinstance(a, CallRpc)]
    socket._take(
        socket.protocol.rpc_failed(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", 1500)
    )
    error = socket.written[-1].error
    assert (error.code, error.message, error.retry_after_ms) == (
        E.ERROR_CODE_RESOURCE_EXHAUSTED,
        "slow down",
        1500,
    )


def test_presence_frames_are_unimplemented_without_a_presence_link() -> None:
    """No presence_target: presence frames answer UNIMPLEMENTED; with one they go to the link."""
    off = Socket(presence=False)
    off.authenticated()
    off.send("t1", typing={"conversationId": "c1", "typing": True})
    assert off.written[-1].error.code == E.ERROR_CODE_UNIMPLEMENTED
    on = Socket(presence=True)
    on.authenticated()
    actions = on.send("t1", typing={"conversationId": "c1", "typing": True})
    assert [a.kind for a in actions if isinstance(a, CallPresence)] == ["typing"]


# -- the held stream -----------------------------------------------------------------------------


def test_a_quiet_socket_gets_an_event_committed_100_ms_after_auth() -> None:
    """Nothing from the app: the event held since 100 ms after auth is written at the delay."""
    socket = Socket(live_start_delay_s=1.0)
    stream = socket.authenticated()
    socket.clock.advance(0.1)
    assert socket.item(stream, caught_up()) == []
    assert socket.item(stream, event("c1", 1)) == []
    assert socket.advance(0.89) == [] and socket.written == []
    socket.advance(0.01)
    assert socket.events() == [("c1", 1)]
    socket.item(stream, event("c1", 2))
    assert socket.events() == [("c1", 1), ("c1", 2)]


def test_a_first_frame_that_is_not_resume_writes_the_held_items_first() -> None:
    """A ping before the delay: the held events, then the pong; the stream carries on live."""
    socket = Socket()
    stream = socket.authenticated()
    socket.item(stream, caught_up({"c1": 0}))
    socket.item(stream, event("c1", 1))
    actions = socket.send("p1", ping={})
    assert not [a for a in actions if isinstance(a, OpenStream)]
    assert socket.kinds() == ["event", "pong"]
    assert socket.protocol.next_deadline() is None


def test_resume_replaces_the_held_stream_with_its_cursors_and_the_held_baselines() -> None:
    """resume {c1: 3}: the new stream starts at c1 3 and at the held baselines elsewhere; held
    events are not written (the new stream replays them), items of the old stream are ignored."""
    socket = Socket()
    held = socket.authenticated()
    socket.item(held, caught_up({"c1": 5, "c2": 5, "c3": 7}))
    socket.item(held, event("c2", 6))
    resumed = opened(socket.send("r1", resume={"cursors": [{"conversationId": "c1", "seq": 3}]}))
    assert resumed.generation == 2
    assert cursors(resumed) == {"c1": 3, "c2": 5, "c3": 7}
    assert socket.written == []
    assert socket.item(held, event("c2", 7)) == []
    for item in (event("c1", 4), event("c1", 5), event("c2", 6), caught_up()):
        socket.item(resumed, item)
    socket.item(resumed, event("c2", 7))
    assert socket.kinds() == ["event", "event", "event", "resumed", "event"]
    assert socket.events() == [("c1", 4), ("c1", 5), ("c2", 6), ("c2", 7)]
    assert socket.written[3].request_id == "r1"


def test_a_resume_before_the_held_stream_caught_up_waits_for_its_baselines() -> None:
    """The resume comes first: the new stream opens when the held one reports its baselines."""
    socket = Socket()
    held = socket.authenticated()
    actions = socket.send("r1", resume={"cursors": [{"conversationId": "c1", "seq": 0}]})
    assert not [a for a in actions if isinstance(a, OpenStream)]
    socket.item(held, event("c2", 5))
    # Another frame meanwhile does not end the hold: the resume still replaces the stream.
    assert not [a for a in socket.send("p1", ping={}) if isinstance(a, OpenStream)]
    resumed = opened(socket.item(held, caught_up({"c2": 4})))
    assert cursors(resumed) == {"c1": 0, "c2": 4}
    assert socket.kinds() == ["pong"]


def test_held_live_signals_are_written_when_a_resume_replaces_the_held_stream() -> None:
    """Seq 0 signals are not in the log, so they are written rather than dropped."""
    socket = Socket()
    held = socket.authenticated()
    socket.item(held, caught_up({"c1": 2}))
    socket.item(held, event("c1", 0))
    socket.send("r1", resume={"cursors": []})
    assert socket.events() == [("c1", 0)]


def test_a_held_event_of_a_conversation_without_baseline_is_replayed_from_that_event() -> None:
    """Joined after the held stream started (no baseline): the new stream starts before it."""
    socket = Socket()
    held = socket.authenticated()
    socket.item(held, caught_up({"c1": 2}))
    socket.item(held, event("new", 5))
    resumed = opened(socket.send("r1", resume={"cursors": []}))
    assert cursors(resumed) == {"c1": 2, "new": 4}


def test_a_held_stream_that_breaks_before_caught_up_is_reopened_and_still_held() -> None:
    """A break before the baselines: the stream reopens after the backoff, still held, and a
    resume that came meanwhile uses the new stream's baselines."""
    socket = Socket(resubscribe_initial_s=0.1, live_start_delay_s=1.0)
    held = socket.authenticated()
    assert socket.ended(held, grpc.StatusCode.UNAVAILABLE) == []
    socket.send("r1", resume={"cursors": [{"conversationId": "c1", "seq": 1}]})
    again = opened(socket.advance(0.1))
    assert cursors(again) == {}
    resumed = opened(socket.item(again, caught_up({"c2": 3})))
    assert cursors(resumed) == {"c1": 1, "c2": 3}
    assert socket.written == []


def test_a_held_stream_that_breaks_after_caught_up_writes_what_it_held() -> None:
    """A break once the baselines are known: the held items are written and the stream reopens
    from them after the backoff."""
    socket = Socket(resubscribe_initial_s=0.1)
    held = socket.authenticated()
    socket.item(held, caught_up({"c1": 2}))
    socket.item(held, event("c1", 3))
    socket.ended(held, None)
    assert socket.events() == [("c1", 3)]
    assert cursors(opened(socket.advance(0.1))) == {"c1": 3}


def test_the_hold_ends_when_it_holds_as_much_as_the_outbound_queue_takes() -> None:
    """A burst before the app speaks is not held without bound: at outbound_queue_max items
    they are written (and the writer's slow-consumer limit takes over)."""
    socket = Socket(outbound_queue_max=3)
    held = socket.authenticated()
    socket.item(held, caught_up())
    socket.item(held, event("c1", 1))
    assert socket.written == []
    socket.item(held, event("c1", 2))
    assert socket.events() == [("c1", 1), ("c1", 2)]
    assert socket.protocol.next_deadline() is None


def test_an_auth_frame_with_cursors_subscribes_from_them_without_holding() -> None:
    """`auth.resume` is the app's first frame: the stream opens from its cursors."""
    socket = Socket()
    socket.open()
    auth = {"token": socket.token(), "resume": [{"conversationId": "c1", "seq": 2}]}
    stream = opened(socket.send("a1", auth=auth))
    assert cursors(stream) == {"c1": 2}
    socket.item(stream, event("c1", 3))
    socket.item(stream, caught_up())
    assert socket.kinds() == ["ready", "event", "resumed"]
    assert socket.protocol.next_deadline() is None


# -- stream breaks ---------------------------------------------------------------------------------


def test_a_broken_stream_reopens_after_the_backoff_from_the_delivered_seqs() -> None:
    """UNAVAILABLE: after resubscribe_initial_s the stream reopens from what was delivered and
    from the baselines of the other conversations."""
    socket = Socket(resubscribe_initial_s=0.1, resubscribe_max_s=5.0)
    stream = socket.authenticated()
    socket.send("p1", ping={})
    socket.item(stream, caught_up({"c2": 9}))
    socket.item(stream, event("c1", 4))
    assert socket.ended(stream, grpc.StatusCode.UNAVAILABLE) == []
    assert socket.advance(0.09) == []
    again = opened(socket.advance(0.02))
    assert cursors(again) == {"c2": 9, "c1": 4}


def test_the_backoff_doubles_per_break_and_caught_up_resets_it() -> None:
    """Each break without a caught_up in between doubles the wait (up to the maximum)."""
    socket = Socket(resubscribe_initial_s=0.1, resubscribe_max_s=0.3)
    stream = socket.authenticated()
    socket.send("p1", ping={})
    waits = []
    for _ in range(3):
        socket.ended(stream, None)
        deadline = socket.protocol.next_deadline()
        assert deadline is not None
        waits.append(round(deadline - socket.clock.monotonic(), 6))
        stream = opened(socket.advance(deadline - socket.clock.monotonic()))
    assert waits == [0.1, 0.2, 0.3]
    socket.item(stream, caught_up())
    socket.ended(stream, None)
    deadline = socket.protocol.next_deadline()
    assert deadline is not None and round(deadline - socket.clock.monotonic(), 6) == 0.1


def test_a_stream_refused_as_unauthenticated_closes_with_1008() -> None:
    """The token stopped working: an error frame, then close 1008."""
    socket = Socket()
    stream = socket.authenticated()
    socket.send("p1", ping={})
    actions = socket.ended(stream, grpc.StatusCode.UNAUTHENTICATED)
    assert socket.written[-1].error.code == E.ERROR_CODE_UNAUTHENTICATED
    assert closes(actions)[0].code == 1008


def test_after_a_fatal_stream_error_the_next_frame_opens_a_new_stream() -> None:
    """PERMISSION_DENIED answers the waiting resume; the next frame resubscribes."""
    socket = Socket()
    stream = socket.authenticated()
    socket.item(stream, caught_up())
    resumed = opened(socket.send("r1", resume={"cursors": [{"conversationId": "c1", "seq": 0}]}))
    socket.ended(resumed, grpc.StatusCode.PERMISSION_DENIED)
    assert (socket.written[-1].request_id, socket.written[-1].error.code) == (
        "r1",
        E.ERROR_CODE_PERMISSION_DENIED,
    )
    assert socket.protocol.next_deadline() is None
    again = opened(socket.send("p1", ping={}))
    assert cursors(again) == {"c1": 0}


def test_replayed_events_at_or_below_the_delivered_seq_are_dropped() -> None:
    """A resubscription may replay what was written: each (conversation, seq) is written once."""
    socket = Socket()
    stream = socket.authenticated()
    socket.send("p1", ping={})
    for item in (event("c1", 1), event("c1", 2), event("c1", 2), event("c1", 0), event("c1", 1)):
        socket.item(stream, item)
    assert socket.events() == [("c1", 1), ("c1", 2), ("c1", 0)]


@pytest.mark.parametrize("binary", [False, True])
def test_events_follow_the_encoding_of_the_last_client_frame(binary: bool) -> None:
    """After a binary frame events are binary protobuf, after a text frame JSON."""
    socket = Socket()
    stream = socket.authenticated()
    ping = gateway_pb2.ClientFrame(request_id="p", ping=gateway_pb2.PingRequest())
    socket.protocol.receive(ping.SerializeToString() if binary else json_format.MessageToJson(ping))
    actions = socket.protocol.stream_item(stream.generation, event("c1", 1))
    (send,) = [a for a in actions if isinstance(a, Send)]
    assert isinstance(send.data, bytes) is binary
    frame = gateway_pb2.ServerFrame()
    if binary:
        assert isinstance(send.data, bytes)
        frame.ParseFromString(send.data)
    else:
        json_format.Parse(send.data, frame)
    assert frame.event == event("c1", 1).event


def test_revoked_conversations_leave_the_cursors() -> None:
    """A cursor revoked by caught_up is not named again on the next resubscription."""
    socket = Socket()
    held = socket.authenticated()
    socket.item(held, caught_up())
    resumed = opened(
        socket.send(
            "r1",
            resume={
                "cursors": [
                    {"conversationId": "c1", "seq": 1},
                    {"conversationId": "gone", "seq": 3},
                ]
            },
        )
    )
    socket.item(resumed, caught_up(revoked=["gone"]))
    assert list(socket.written[-1].resumed.revoked_conversation_ids) == ["gone"]
    socket.ended(resumed, None)
    again = opened(socket.advance(10.0))
    assert cursors(again) == {"c1": 1}
