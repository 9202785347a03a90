"""Frame translation without sockets: decoding, typed errors, encoding, status mapping."""

from __future__ import annotations

import json

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2, types_pb2
from chatmesh.events.v1 import event_service_pb2, events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format

from gateway_ws import frames
from gateway_ws.frames import FrameError

INVALID = gateway_pb2.ERROR_CODE_INVALID_ARGUMENT


def _error(result: gateway_pb2.ClientFrame | FrameError) -> FrameError:
    assert isinstance(result, FrameError), f"expected an error, got {result}"
    return result


def _frame(result: gateway_pb2.ClientFrame | FrameError) -> gateway_pb2.ClientFrame:
    assert isinstance(result, gateway_pb2.ClientFrame), f"expected a frame, got {result}"
    return result


def _send_frame(body: str = "hi", request_id: str = "r1") -> gateway_pb2.ClientFrame:
    frame = gateway_pb2.ClientFrame(request_id=request_id)
    frame.send_message.conversation_id = "c1"
    frame.send_message.client_msg_id = "m1"
    frame.send_message.body = body
    return frame


# -- decoding: good frames ---------------------------------------------------------------------


def test_json_frame_decodes_with_camel_case_names() -> None:
    """A text frame in proto3 JSON (lowerCamelCase) decodes into a ClientFrame."""
    text = '{"requestId":"r1","sendMessage":{"conversationId":"c1","clientMsgId":"m1","body":"hi"}}'
    frame = _frame(frames.decode_client_frame(text))
    assert frame == _send_frame()


def test_json_frame_decodes_with_proto_field_names() -> None:
    """The original snake_case field names are accepted too."""
    text = (
        '{"request_id":"r1","send_message":'
        '{"conversation_id":"c1","client_msg_id":"m1","body":"hi"}}'
    )
    assert _frame(frames.decode_client_frame(text)) == _send_frame()


def test_json_frame_accepts_enum_names_and_string_uint64() -> None:
    """Enums by name and 64-bit integers as strings are proto3 JSON."""
    text = '{"requestId":"r","getHistory":{"conversationId":"c","beforeSeq":"9007199254740993"}}'
    frame = _frame(frames.decode_client_frame(text))
    assert frame.get_history.before_seq == 9007199254740993
    text = '{"requestId":"r","sendMessage":{"kind":"MESSAGE_KIND_MEDIA"}}'
    assert (
        _frame(frames.decode_client_frame(text)).send_message.kind == types_pb2.MESSAGE_KIND_MEDIA
    )


def test_empty_message_frame_type_decodes() -> None:
    """`{"ping":{}}` is a ping even though the ping message has no fields."""
    frame = _frame(frames.decode_client_frame('{"requestId":"p","ping":{}}'))
    assert frame.WhichOneof("frame") == "ping"


def test_binary_frame_decodes() -> None:
    """A binary frame is binary protobuf."""
    data = _send_frame().SerializeToString()
    assert _frame(frames.decode_client_frame(data)) == _send_frame()


# -- decoding: typed errors --------------------------------------------------------------------


def test_malformed_json_is_an_error_that_keeps_the_request_id() -> None:
    """Broken JSON is MALFORMED_JSON; a request_id that can be spotted is echoed."""
    error = _error(frames.decode_client_frame('{"requestId": "r7", "ping": {'))
    assert (error.code, error.reason, error.request_id) == (INVALID, frames.MALFORMED_JSON, "r7")


def test_malformed_json_without_request_id_has_none() -> None:
    """Nothing to echo: the request_id stays empty."""
    error = _error(frames.decode_client_frame("not json at all"))
    assert (error.reason, error.request_id) == (frames.MALFORMED_JSON, "")


def test_json_that_is_not_an_object_is_an_error() -> None:
    """A frame must be a JSON object."""
    for text in ("[1, 2]", '"ping"', "42", "null"):
        assert _error(frames.decode_client_frame(text)).reason == frames.NOT_AN_OBJECT


def test_unknown_frame_type_is_named() -> None:
    """An unknown top-level key is an unknown frame type, named in the message."""
    error = _error(frames.decode_client_frame('{"requestId":"r2","videoCall":{"on":true}}'))
    assert (error.reason, error.request_id) == (frames.UNKNOWN_FRAME_TYPE, "r2")
    assert "videoCall" in error.message


def test_unknown_nested_field_is_named_with_its_path() -> None:
    """Unknown fields are rejected (ignore_unknown_fields=False) with their path."""
    error = _error(frames.decode_client_frame('{"requestId":"r","sendMessage":{"bodyy":"x"}}'))
    assert error.reason == frames.UNKNOWN_FIELD
    assert "sendMessage.bodyy" in error.message


def test_message_field_with_a_scalar_is_a_wrong_type() -> None:
    """A string where an object belongs is WRONG_TYPE, naming the field."""
    error = _error(frames.decode_client_frame('{"requestId":"r","sendMessage":"hello"}'))
    assert error.reason == frames.WRONG_TYPE
    assert error.message == "sendMessage must be a JSON object, not a string"


def test_message_field_with_an_empty_array_is_a_wrong_type() -> None:
    """json_format would take `[]` as an empty message; proto3 JSON (and this edge) does not."""
    for text, name in [
        ('{"requestId":"r","resume":[]}', "resume"),
        ('{"requestId":"r","sendMessage":{"conversationId":"c","clientMsgId":"k","body":"b",'
         '"mentions":[],"attachments":[ ]}}', None),
    ]:  # fmt: skip
        decoded = frames.decode_client_frame(text)
        if name is None:
            assert not isinstance(decoded, frames.FrameError), decoded
            continue
        error = _error(decoded)
        assert error.reason == frames.WRONG_TYPE
        assert error.message == f"{name} must be a JSON object, not an array"
        assert error.request_id == "r"


def test_repeated_field_with_a_scalar_is_a_wrong_type() -> None:
    """A repeated field needs an array."""
    text = '{"requestId":"r","addMembers":{"conversationId":"c","userIds":"bob"}}'
    error = _error(frames.decode_client_frame(text))
    assert error.reason == frames.WRONG_TYPE
    assert "addMembers.userIds must be a JSON array" in error.message


def test_repeated_message_item_with_a_scalar_is_a_wrong_type() -> None:
    """Each element of a repeated message field must be an object."""
    error = _error(frames.decode_client_frame('{"requestId":"r","resume":{"cursors":[7]}}'))
    assert error.message == "resume.cursors[0] must be a JSON object, not a number"


def test_scalar_of_the_wrong_type_is_a_wrong_type() -> None:
    """Scalars that do not convert are WRONG_TYPE and the message names the field."""
    for text, name in [
        ('{"requestId":"r","getHistory":{"limit":"abc"}}', "limit"),
        ('{"requestId":"r","getHistory":{"limit":-1}}', "limit"),
        ('{"requestId":"r","sendMessage":{"body":5}}', "body"),
        ('{"requestId":"r","sendMessage":{"kind":"NOPE"}}', "kind"),
        ('{"requestId":"r","sendMessage":{"body":"\\ud800"}}', "body"),
        # An enum name with one: protobuf's lookup raised SystemError (found by fuzzing).
        ('{"requestId":"r","sendMessage":{"kind":"\\ud800"}}', "sendMessage.kind"),
    ]:
        error = _error(frames.decode_client_frame(text))
        assert (error.reason, error.request_id) == (frames.WRONG_TYPE, "r"), text
        assert name in error.message, text


def test_request_id_of_the_wrong_type_is_a_wrong_type() -> None:
    """request_id must be a string."""
    error = _error(frames.decode_client_frame('{"requestId":5,"ping":{}}'))
    assert error.reason == frames.WRONG_TYPE
    assert error.request_id == ""


def test_two_frame_types_in_one_frame_are_an_error() -> None:
    """The `frame` oneof takes exactly one case."""
    error = _error(frames.decode_client_frame('{"requestId":"r","ping":{},"resume":{}}'))
    assert error.reason == frames.MULTIPLE_FRAME_TYPES


def test_frame_without_a_type_is_an_error() -> None:
    """An empty oneof is EMPTY_FRAME, in JSON and in binary."""
    assert _error(frames.decode_client_frame('{"requestId":"r"}')).reason == frames.EMPTY_FRAME
    binary = gateway_pb2.ClientFrame(request_id="r").SerializeToString()
    error = _error(frames.decode_client_frame(binary))
    assert (error.reason, error.request_id) == (frames.EMPTY_FRAME, "r")


def test_binary_invalid_utf8_names_the_string_field() -> None:
    """Bad UTF-8 in a binary frame's string field is INVALID_UTF8 naming the field."""
    data = _send_frame(body="hi").SerializeToString().replace(b"hi", b"\xff\xfe")
    error = _error(frames.decode_client_frame(data))
    assert (error.code, error.reason, error.request_id) == (INVALID, frames.INVALID_UTF8, "r1")
    assert error.message == "send_message.body is not valid UTF-8"


def test_binary_invalid_utf8_in_a_repeated_message_names_the_element() -> None:
    """The path includes the index of a repeated element."""
    frame = gateway_pb2.ClientFrame(request_id="r9")
    frame.auth.token = "t"
    frame.auth.resume.add(conversation_id="ok", seq=1)
    frame.auth.resume.add(conversation_id="XX", seq=2)
    data = frame.SerializeToString().replace(b"XX", b"\xc3\x28")
    error = _error(frames.decode_client_frame(data))
    assert error.message == "auth.resume[1].conversation_id is not valid UTF-8"


def test_truncated_binary_frame_is_malformed_and_keeps_the_request_id() -> None:
    """A cut-off protobuf is MALFORMED_PROTOBUF; the request_id before the cut is echoed."""
    data = _send_frame().SerializeToString()[:-1]
    error = _error(frames.decode_client_frame(data))
    assert (error.reason, error.request_id) == (frames.MALFORMED_PROTOBUF, "r1")


def test_binary_frame_of_an_unknown_type_is_an_error() -> None:
    """A top-level field number the gateway does not know is UNKNOWN_FRAME_TYPE."""
    data = b"\x0a\x02r3" + bytes([0x9A, 0x06, 0x00])  # request_id "r3", field 99 (empty)
    error = _error(frames.decode_client_frame(data))
    assert (error.reason, error.request_id) == (frames.UNKNOWN_FRAME_TYPE, "r3")
    assert "99" in error.message


def test_request_id_longer_than_64_characters_is_refused() -> None:
    """At most 64 characters; the too-long id is echoed so the client can match the error."""
    ok = json.dumps({"requestId": "x" * 64, "ping": {}})
    assert _frame(frames.decode_client_frame(ok)).request_id == "x" * 64
    long_id = "é" * 65  # characters, not bytes
    error = _error(frames.decode_client_frame(json.dumps({"requestId": long_id, "ping": {}})))
    assert (error.reason, error.request_id) == (frames.REQUEST_ID_TOO_LONG, long_id)
    binary = gateway_pb2.ClientFrame(request_id="y" * 65, ping={}).SerializeToString()
    assert _error(frames.decode_client_frame(binary)).reason == frames.REQUEST_ID_TOO_LONG


# -- encoding ----------------------------------------------------------------------------------


def test_json_encoding_is_compact_camel_case_proto3_json() -> None:
    """Text frames: lowerCamelCase, 64-bit ints as strings, enums by name, no spaces."""
    frame = gateway_pb2.ServerFrame(request_id="r1")
    frame.send_message.message.seq = 5
    frame.send_message.message.kind = types_pb2.MESSAGE_KIND_TEXT
    frame.send_message.message.body = "héllo"
    text = frames.encode_frame(frame, binary=False)
    assert isinstance(text, str)
    assert text == (
        '{"requestId":"r1","sendMessage":{"message":{"seq":"5",'
        '"kind":"MESSAGE_KIND_TEXT","body":"héllo"}}}'
    )
    assert frames.decode_server_frame(text) == frame


def test_binary_encoding_is_protobuf() -> None:
    """Binary frames are the serialized ServerFrame."""
    frame = gateway_pb2.ServerFrame(request_id="r1", pong=gateway_pb2.PingResponse())
    data = frames.encode_frame(frame, binary=True)
    assert data == frame.SerializeToString()
    assert frames.decode_server_frame(data) == frame


def test_empty_message_case_survives_json_encoding() -> None:
    """A pong (an empty message) is still a pong after JSON."""
    frame = gateway_pb2.ServerFrame(request_id="p", pong=gateway_pb2.PingResponse())
    text = frames.encode_frame(frame, binary=False)
    assert text == '{"requestId":"p","pong":{}}'


@pytest.mark.parametrize("request_id", ["", "r1", "ü" * 64])
@pytest.mark.parametrize("binary", [True, False])
def test_payload_encoding_matches_a_built_server_frame(request_id: str, binary: bool) -> None:
    """Framing gRPC's answer bytes gives the same frame as building the ServerFrame."""
    answer = chat_service_pb2.GetHistoryResponse(has_more=True, last_seq=300)
    answer.messages.add(conversation_id="c", seq=300, body="x" * 200)
    expected = gateway_pb2.ServerFrame(request_id=request_id)
    expected.get_history.CopyFrom(answer)
    encoded = frames.encode_payload(
        request_id, frames.SERVER_SLOTS["get_history"], answer.SerializeToString(), binary
    )
    assert frames.decode_server_frame(encoded) == expected
    if binary:
        assert encoded == expected.SerializeToString()


def test_payload_encoding_of_an_empty_answer() -> None:
    """An empty answer (BlockUserResponse) still names its frame type."""
    encoded = frames.encode_payload("r", frames.SERVER_SLOTS["block_user"], b"", binary=False)
    assert encoded == '{"requestId":"r","blockUser":{}}'
    encoded = frames.encode_payload("r", frames.SERVER_SLOTS["block_user"], b"", binary=True)
    assert frames.decode_server_frame(encoded).WhichOneof("frame") == "block_user"


@pytest.mark.parametrize("binary", [True, False])
def test_event_encoding_reuses_the_serialized_event(binary: bool) -> None:
    """An event frame equals ServerFrame(event=...), from the stream's response bytes."""
    event = events_pb2.ConversationEvent(conversation_id="c", seq=7, actor_id="a")
    event.message_created.message.body = "b" * 300
    raw = event_service_pb2.SubscribeEventsResponse(event=event).SerializeToString()
    encoded = frames.encode_event(raw, event, binary)
    assert frames.decode_server_frame(encoded) == gateway_pb2.ServerFrame(event=event)


def test_event_encoding_falls_back_when_the_response_has_more_fields() -> None:
    """Bytes after the event (a newer peer's field) do not leak into the frame."""
    event = events_pb2.ConversationEvent(conversation_id="c", seq=1)
    raw = event_service_pb2.SubscribeEventsResponse(event=event).SerializeToString()
    raw += b"\x18\x01"  # an unknown varint field 3
    encoded = frames.encode_event(raw, event, binary=True)
    assert encoded == gateway_pb2.ServerFrame(event=event).SerializeToString()


def test_error_encoding_carries_code_message_and_retry_after() -> None:
    """Error frames echo the request_id and carry retry_after_ms when set."""
    text = frames.encode_error(
        "r", gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED, "slow down", False, retry_after_ms=250
    )
    assert json.loads(text) == {
        "requestId": "r",
        "error": {
            "code": "ERROR_CODE_RESOURCE_EXHAUSTED",
            "message": "slow down",
            "retryAfterMs": 250,
        },
    }


def test_server_frame_json_round_trips_through_json_format() -> None:
    """What the gateway writes is what json_format.Parse reads."""
    frame = gateway_pb2.ServerFrame(request_id="x")
    frame.ready.user_id = "u"
    frame.ready.heartbeat_interval_ms = 20000
    assert json_format.Parse(frames.encode_frame(frame, False), gateway_pb2.ServerFrame()) == frame


# -- status codes, subprotocols, cursors ------------------------------------------------------


def test_every_grpc_status_maps_to_the_error_code_of_the_same_name() -> None:
    """gRPC status codes and ErrorCode share numbers and names."""
    for status in grpc.StatusCode:
        if status is grpc.StatusCode.OK:
            continue
        code = frames.error_code_for_status(status)
        assert code == status.value[0]
        assert gateway_pb2.ErrorCode.Name(code) == f"ERROR_CODE_{status.name}"
    assert frames.error_code_for_status(None) == gateway_pb2.ERROR_CODE_UNKNOWN
    assert frames.error_code_for_status(grpc.StatusCode.OK) == gateway_pb2.ERROR_CODE_UNKNOWN


def test_bearer_token_is_read_from_the_offered_subprotocols() -> None:
    """`chatmesh.v1` plus `bearer.<token>`; the token keeps its dots."""
    assert frames.bearer_token_from_subprotocols(["chatmesh.v1", "bearer.a.b.c"]) == (
        True,
        "a.b.c",
    )
    assert frames.bearer_token_from_subprotocols(["chatmesh.v1"]) == (True, None)
    assert frames.bearer_token_from_subprotocols([]) == (False, None)


def test_cursors_need_a_conversation_id() -> None:
    """Empty or over-long conversation ids in cursors are named."""
    good = [types_pb2.ConversationCursor(conversation_id="c", seq=3)]
    assert frames.validate_cursors(good, "resume.cursors") is None
    bad = [*good, types_pb2.ConversationCursor(conversation_id="", seq=1)]
    error = frames.validate_cursors(bad, "resume.cursors")
    assert error is not None
    assert error.message.startswith("resume.cursors[1].conversation_id")
    long = [types_pb2.ConversationCursor(conversation_id="c" * 129)]
    assert frames.validate_cursors(long, "auth.resume") is not None
