"""The hot frames' fast JSON path writes and reads exactly what the generic json_format codec
does: random messages and random JSON objects, compared text for text and frame for frame."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from chatmesh.chat.v1 import chat_service_pb2, types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_ws import fast_json, frames
from tests.fuzz.strategies import FUZZ_EXAMPLES, messages

EXAMPLES = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range RFC 3339 can print.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_NANOS = st.one_of(
    st.just(0),
    st.integers(0, 999).map(lambda ms: ms * 1_000_000),
    st.integers(0, 999_999).map(lambda us: us * 1_000),
    st.integers(0, 999_999_999),
)
_SECONDS = st.one_of(
    st.sampled_from([_MIN_SECONDS, _MAX_SECONDS, 0, -1, 1_764_700_000]),
    st.integers(_MIN_SECONDS, _MAX_SECONDS),
)
_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ['"', "\\", "\u2028\u2029", "\x00\x1f\x7f", "</script>", "🙂é\u00a0", "\ud7ff"]
    ),
)


def _generic_text(obj: dict[str, Any]) -> str:
    """The text frames.py wrote before the fast path: json_format's dict, dumped once."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _valid_timestamps(draw: st.DrawFn, message: Message) -> Message:
    """Most timestamps of a random message moved into the printable range (a few stay out)."""
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        items = value if field.is_repeated else [value]
        for item in items:
            if isinstance(item, Timestamp):
                if draw(st.integers(0, 9)):
                    item.seconds = draw(_SECONDS)
                    item.nanos = draw(_NANOS)
            else:
                _valid_timestamps(draw, item)
    return message


def _random(cls: type[Message], depth: int = 4) -> st.SearchStrategy[Message]:
    @st.composite
    def build(draw: st.DrawFn) -> Message:
        return _valid_timestamps(draw, draw(messages(cls.DESCRIPTOR, cls, depth=depth)))

    return build()


def _outcome(encode: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", encode(*args)
    except Exception as exc:
        return "raised", type(exc).__name__


def test_every_hot_encoder_is_on() -> None:
    """Each hand-written encoder still matches its message's fields (else json_format writes it)."""
    assert set(fast_json.ENCODERS) == {
        types_pb2.Attachment,
        types_pb2.Message,
        events_pb2.MessageCreated,
        events_pb2.MessageEdited,
        events_pb2.MessageDeleted,
        events_pb2.ReceiptMoved,
        events_pb2.TypingChanged,
        events_pb2.ConversationEvent,
        chat_service_pb2.SendMessageResponse,
        chat_service_pb2.MarkReadResponse,
        chat_service_pb2.MarkDeliveredResponse,
    }


@EXAMPLES
@given(_random(events_pb2.ConversationEvent))
def test_event_frames_match_json_format(event: events_pb2.ConversationEvent) -> None:
    """A pushed event frame is json_format's text, for any event (or fails as json_format does)."""
    fast = _outcome(frames.encode_event, b"", event, False)
    generic = _outcome(lambda: _generic_text({"event": json_format.MessageToDict(event)}))
    assert fast == generic


@EXAMPLES
@given(
    st.sampled_from(["send_message", "mark_read", "mark_delivered"]).flatmap(
        lambda slot: st.tuples(
            st.just(slot),
            _random(frames.SERVER_SLOTS[slot].message_class),
            st.one_of(st.just(""), _TEXT),
        )
    )
)
def test_answer_frames_match_json_format(case: tuple[str, Message, str]) -> None:
    """Acks and read / delivered answers are json_format's text, request id included."""
    slot_name, answer, request_id = case
    slot = frames.SERVER_SLOTS[slot_name]
    fast = _outcome(frames.encode_payload, request_id, slot, answer.SerializeToString(), False)

    def generic() -> str:
        obj: dict[str, Any] = {"requestId": request_id} if request_id else {}
        obj[slot.json_name] = json_format.MessageToDict(answer)
        return _generic_text(obj)

    assert fast == _outcome(generic)


@EXAMPLES
@given(_TEXT, st.sampled_from([0, 1, 7, 999_999_999, 1_000, 120_000_000]), _SECONDS)
def test_message_escaping_and_timestamps_match(body: str, nanos: int, seconds: int) -> None:
    """Escaping of unusual text and every RFC 3339 precision are json_format's."""
    message = types_pb2.Message(conversation_id="c", seq=2**64 - 1, body=body, sender_id=body)
    message.created_at.seconds, message.created_at.nanos = seconds, nanos
    message.edited_at.SetInParent()  # present and zero: 1970-01-01T00:00:00Z
    event = events_pb2.ConversationEvent(conversation_id="c", seq=1, actor_id=body)
    event.message_created.message.CopyFrom(message)
    assert frames.encode_event(b"", event, False) == _generic_text(
        {"event": json_format.MessageToDict(event)}
    )


@EXAMPLES
@given(
    st.one_of(_SECONDS, st.integers(-(2**63), 2**63 - 1)),
    st.one_of(_NANOS, st.integers(-(2**31), 2**31 - 1)),
)
def test_timestamps_print_as_to_json_string(seconds: int, nanos: int) -> None:
    """RFC 3339 text of any timestamp is Timestamp.ToJsonString's, out of range ones refused."""
    timestamp = Timestamp(seconds=seconds, nanos=nanos)
    assert _outcome(fast_json.timestamp_text, timestamp) == _outcome(timestamp.ToJsonString)


def test_unknown_enum_number_is_written_as_a_number() -> None:
    """An enum value this gateway does not know goes out as its number, as json_format does."""
    message = types_pb2.Message(kind=cast(types_pb2.MessageKind, 99))
    assert fast_json.to_json_object(message) == {"kind": 99} == json_format.MessageToDict(message)


# -- decoding ----------------------------------------------------------------------------------

_HOT_KEYS = [
    "sendMessage", "send_message", "markRead", "mark_read", "markDelivered", "mark_delivered",
]  # fmt: skip
_FIELD_KEYS = [
    "conversationId", "conversation_id", "clientMsgId", "client_msg_id", "body", "kind",
    "attachments", "replyToSeq", "reply_to_seq", "mentions", "seq", "nope",
]  # fmt: skip
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_FIELD_VALUES = st.one_of(
    _TEXT,
    st.booleans(),
    _JSON_VALUES,
    st.integers(-5, 2**64 + 5),
    st.sampled_from([2**64 - 1, 2**64, -1, 1.0, 1.5, "007", "12", "1e3", " 1", "+1", "٣", "1_0"]),
    st.sampled_from(["MESSAGE_KIND_TEXT", "MESSAGE_KIND_MEDIA", "MESSAGE_KIND_NOPE", 1, 99]),
    st.lists(_TEXT, max_size=3),
    st.sampled_from(["\ud800", ["\udfff"], [], [1]]),
)


@st.composite
def _frame_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["requestId", "request_id"]))] = draw(
            st.one_of(_TEXT, _JSON_VALUES)
        )
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from([*_HOT_KEYS, "ping", "resume", "nope", "requestId"]))
        if draw(st.integers(0, 5)):
            fields = draw(st.dictionaries(st.sampled_from(_FIELD_KEYS), _FIELD_VALUES, max_size=5))
            obj[key] = fields
        else:
            obj[key] = draw(_JSON_VALUES)
    return obj


@st.composite
def _request_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Hot client frames as json_format writes them, 64-bit numbers sometimes unquoted."""
    case = draw(st.sampled_from(["send_message", "mark_read", "mark_delivered"]))
    request_class = getattr(gateway_pb2.ClientFrame(), case).__class__
    request = draw(messages(request_class.DESCRIPTOR, request_class, depth=1))
    frame = gateway_pb2.ClientFrame(request_id=draw(_TEXT))
    getattr(frame, case).CopyFrom(request)
    snake = draw(st.booleans())
    obj: dict[str, Any] = json_format.MessageToDict(frame, preserving_proto_field_name=snake)
    body = obj[case if snake else _camel(case)]
    for key, value in list(body.items()):
        if isinstance(value, str) and value.isdigit() and draw(st.booleans()):
            body[key] = int(value)
    return obj


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _same_decoding(text: str) -> None:
    fast = frames.decode_client_frame(text, max_request_id_chars=10**9)
    generic = frames.decode_text_generic(text)
    assert type(fast) is type(generic)
    if isinstance(fast, gateway_pb2.ClientFrame):
        assert isinstance(generic, gateway_pb2.ClientFrame)
        assert fast == generic
        assert fast.SerializeToString(deterministic=True) == generic.SerializeToString(
            deterministic=True
        )
    else:
        assert fast == generic


@EXAMPLES
@given(_frame_objects(), st.booleans())
def test_random_json_frames_decode_as_json_format_does(obj: dict[str, Any], ascii: bool) -> None:
    """Any JSON object: the same frame, or the same error (reason, message, request id)."""
    _same_decoding(json.dumps(obj, ensure_ascii=ascii))


@EXAMPLES
@given(_request_objects())
def test_hot_frames_decode_as_json_format_does(obj: dict[str, Any]) -> None:
    """Well-formed send / markRead / markDelivered frames of any content decode the same."""
    _same_decoding(json.dumps(obj))


def test_a_browser_send_frame_takes_the_fast_path() -> None:
    """The frame a web app sends is decoded without json_format."""
    obj = {
        "requestId": "q1",
        "sendMessage": {"conversationId": "c", "clientMsgId": "m", "body": "hé 🙂",
                        "kind": "MESSAGE_KIND_TEXT", "mentions": ["u2"], "replyToSeq": "7"},
    }  # fmt: skip
    frame = fast_json.decode_hot_frame(obj)
    assert frame is not None
    assert frame == frames.decode_text_generic(json.dumps(obj))


@pytest.mark.parametrize(
    "text",
    [
        '{"requestId":"r","sendMessage":[]}',
        '{"requestId":"r","sendMessage":{"conversationId":"c","attachments":[]}}',
        '{"requestId":"r","markRead":{"conversationId":"c","seq":1.0}}',
        '{"requestId":"r","markRead":{"conversationId":"c","seq":true}}',
        '{"requestId":"r","markRead":{"conversationId":"c","seq":"18446744073709551616"}}',
        '{"requestId":"r","sendMessage":{"body":null}}',
        '{"requestId":"r","request_id":"s","markDelivered":{}}',
        '{"requestId":"r","sendMessage":{"body":"\\ud800"}}',
    ],
)
def test_unusual_frames_decode_as_json_format_does(text: str) -> None:
    """Empty arrays, floats, booleans and out-of-range numbers, nulls, both spellings of a key,
    lone surrogates: json_format decides."""
    _same_decoding(text)
