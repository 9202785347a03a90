"""The gateway's pure core under random client frames: nothing raises, every answer is a frame
that decodes, and a bad frame gets an error frame (or the socket's abuse close)."""

from __future__ import annotations

import json
from typing import Any

from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_ws.protocol import CallPresence, CallRpc, Close, Send
from tests.gateway.test_protocol import Socket

from . import tally
from .strategies import FUZZ_EXAMPLES, messages

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CLIENT_FRAMES = messages(gateway_pb2.ClientFrame.DESCRIPTOR, gateway_pb2.ClientFrame, depth=3)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
FRAME_KEYS = [f.json_name for f in gateway_pb2.ClientFrame.DESCRIPTOR.fields] + ["nope", ""]


def _decoded(socket: Socket, actions: list[Any], binary: bool) -> list[gateway_pb2.ServerFrame]:
    out: list[gateway_pb2.ServerFrame] = []
    for action in actions:
        if isinstance(action, Send):
            frame = gateway_pb2.ServerFrame()
            if isinstance(action.data, bytes):
                frame.ParseFromString(action.data)
            else:
                json_format.Parse(action.data, frame)
            out.append(frame)
            if frame.WhichOneof("frame") == "error":
                code = gateway_pb2.ErrorCode.Name(frame.error.code)
                tally.refusal("gateway core", code, frame.error.message)
    tally.example("gateway core")
    return out


class _BinarySocket(Socket):
    def _take(self, actions: list[Any]) -> list[Any]:  # binary answers: no JSON parsing here
        self.actions.extend(actions)
        return actions


@FUZZ
@given(CLIENT_FRAMES)
def test_random_binary_frames_get_an_answer_or_a_call_never_an_exception(
    frame: gateway_pb2.ClientFrame,
) -> None:
    socket = _BinarySocket()
    socket.authenticated()
    actions = socket.receive(frame.SerializeToString())
    answers = _decoded(socket, actions, binary=True)
    acted = any(isinstance(a, CallRpc | CallPresence | Close) for a in actions)
    assert answers or acted or frame.WhichOneof("frame") in (None, "ping", "resume", "auth"), (
        f"no answer to {frame}"
    )


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(data: bytes) -> None:
    socket = _BinarySocket()
    socket.authenticated()
    _decoded(socket, socket.receive(data), binary=True)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(FRAME_KEYS), json_values, max_size=3),
    st.text(max_size=40),
)
def test_random_json_frames_get_an_answer_or_a_call_never_an_exception(
    payload: dict[str, Any], request_id: str
) -> None:
    socket = Socket()
    socket.authenticated()
    actions = socket.receive(json.dumps({"requestId": request_id, **payload}))
    answers = _decoded(socket, actions, binary=False)
    acted = any(isinstance(a, CallRpc | CallPresence | Close) for a in actions)
    # `requestId` may come from the payload too (it is one of the frame's keys), and a null is
    # an absent field in proto3 JSON.
    frame_keys = {key for key, value in payload.items() if value is not None} - {"requestId"}
    assert answers or acted or frame_keys <= {"ping", "resume", "auth"}


@FUZZ
@given(st.text(max_size=300))
def test_random_text_never_raises_and_is_refused_clearly(text: str) -> None:
    socket = Socket()
    socket.authenticated()
    actions = socket.receive(text)
    answers = _decoded(socket, actions, binary=False)
    assert answers or any(isinstance(a, CallRpc | CallPresence | Close) for a in actions) or text
