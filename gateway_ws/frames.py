"""Frame translation for the WebSocket protocol: pure code, no I/O.

Encodings (the `ClientFrame` / `ServerFrame` messages of `chatmesh/gateway/v1/gateway.proto`):

* a text message is proto3 JSON; the server writes lowerCamelCase field names (the proto3 JSON
  default), enum values as names, 64-bit integers as strings, and leaves out default values; it
  reads both lowerCamelCase and the original snake_case names;
* a binary message is binary protobuf.

The hot frames (send, ack, event, read and delivered markers) go through `fast_json`, which
writes and reads exactly what json_format does without its reflection; everything else, and
every frame `fast_json` is unsure of, goes through json_format.

The server answers a frame in the encoding of that frame; pushed events follow the encoding of
the connection's last client frame (text until the client has sent one).

Decoding never raises: it returns a `ClientFrame` or a `FrameError` that says what is wrong,
names the field where it can, and carries the request_id when one could be read from the broken
frame, so the error frame can echo it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.presence.v1 import presence_service_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from chatmesh_common.limits import LIMITS
from gateway_ws import fast_json

ClientFrame = gateway_pb2.ClientFrame
ServerFrame = gateway_pb2.ServerFrame
ErrorCode = gateway_pb2.ErrorCode

# What goes over the socket: str for a text message, bytes for a binary one.
Encoded = str | bytes

SUBPROTOCOL: Final = "chatmesh.v1"
BEARER_PREFIX: Final = "bearer."

# FrameError.reason values (also the `outcome` label of frame metrics).
MALFORMED_JSON: Final = "malformed_json"
NOT_AN_OBJECT: Final = "not_an_object"
UNKNOWN_FRAME_TYPE: Final = "unknown_frame_type"
MULTIPLE_FRAME_TYPES: Final = "multiple_frame_types"
EMPTY_FRAME: Final = "empty_frame"
UNKNOWN_FIELD: Final = "unknown_field"
WRONG_TYPE: Final = "wrong_type"
INVALID_UTF8: Final = "invalid_utf8"
MALFORMED_PROTOBUF: Final = "malformed_protobuf"
REQUEST_ID_TOO_LONG: Final = "request_id_too_long"
INVALID_VALUE: Final = "invalid_value"

_CLIENT_DESC: Final = cast(Descriptor, ClientFrame.DESCRIPTOR)
_SERVER_DESC: Final = cast(Descriptor, ServerFrame.DESCRIPTOR)
_FRAME_ONEOF: Final = "frame"
_JSON_SEPARATORS: Final = (",", ":")


@dataclass(frozen=True, slots=True)
class FrameError:
    """A client frame that cannot be handled; it becomes an `error` server frame."""

    code: ErrorCode
    reason: str
    message: str
    request_id: str = ""


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_client_frame(
    data: str | bytes, max_request_id_chars: int = 64
) -> ClientFrame | FrameError:
    """Decodes one WebSocket message: str as proto3 JSON, bytes as binary protobuf."""
    frame = _decode_text(data) if isinstance(data, str) else _decode_binary(data)
    if isinstance(frame, FrameError):
        return frame
    if len(frame.request_id) > max_request_id_chars:
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            REQUEST_ID_TOO_LONG,
            f"request_id has {len(frame.request_id)} characters; at most "
            f"{max_request_id_chars} are allowed",
            frame.request_id,
        )
    return frame


def _decode_text(text: str) -> ClientFrame | FrameError:
    obj = _loads(text)
    if isinstance(obj, dict):
        frame = fast_json.decode_hot_frame(obj)
        if frame is not None:
            return frame
    return _decode_parsed(text, obj)


def decode_text_generic(text: str) -> ClientFrame | FrameError:
    """A text frame through json_format alone: the reference the fast path is tested against."""
    return _decode_parsed(text, _loads(text))


class _Unparsed:
    """What json.loads made of a text that is not JSON: the error to report."""

    __slots__ = ("error",)

    def __init__(self, error: FrameError) -> None:
        self.error = error


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError
        return _Unparsed(
            FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                MALFORMED_JSON,
                f"malformed JSON: {exc}",
                _request_id_from_text(text),
            )
        )
    except RecursionError:
        return _Unparsed(
            FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, MALFORMED_JSON, "malformed JSON: too deep"
            )
        )


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _decode_parsed(text: str, obj: object) -> ClientFrame | FrameError:
    if isinstance(obj, _Unparsed):
        return obj.error
    if not isinstance(obj, dict):
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            NOT_AN_OBJECT,
            f"a frame must be a JSON object, not {_json_kind(obj)}",
        )
    frame = ClientFrame()
    try:
        json_format.ParseDict(obj, frame, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        return _explain_json_error(obj, str(exc))
    except SystemError:
        # upb's enum lookup by name fails this way on a lone surrogate (a "\ud800" escape)
        # instead of raising ParseError; found by the fuzz suite.
        where = _surrogate_path(obj, "") or "a string"
        return _explain_json_error(obj, f"{where} holds an unpaired surrogate")
    except RecursionError:
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            WRONG_TYPE,
            "frame is nested too deeply",
            _request_id_from_obj(obj),
        )
    # json_format takes an empty array for a message field (as an empty message); proto3 JSON
    # does not. Only a frame with an empty array pays for the shape check.
    if _EMPTY_ARRAY.search(text):
        found = _find_shape_error(obj, _CLIENT_DESC, "")
        if found is not None:
            reason, message = found
            return FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, reason, message, frame.request_id
            )
    if frame.WhichOneof(_FRAME_ONEOF) is None:
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            EMPTY_FRAME,
            "frame has no type: set exactly one of " + ", ".join(_frame_json_names()),
            frame.request_id,
        )
    return frame


_EMPTY_ARRAY = re.compile(r"\[\s*\]")


def _decode_binary(data: bytes) -> ClientFrame | FrameError:
    frame = ClientFrame()
    try:
        frame.ParseFromString(data)
    except DecodeError:
        request_id = _request_id_from_wire(data)
        try:
            path = _invalid_utf8_path(data, _CLIENT_DESC)
        except _Malformed:
            path = None
        if path is not None:
            return FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                INVALID_UTF8,
                f"{path} is not valid UTF-8",
                request_id,
            )
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            MALFORMED_PROTOBUF,
            "malformed protobuf: cannot parse a ClientFrame",
            request_id,
        )
    if frame.WhichOneof(_FRAME_ONEOF) is None:
        unknown = _unknown_top_level_field(data)
        if unknown is not None:
            return FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                UNKNOWN_FRAME_TYPE,
                f"unknown frame type (field number {unknown})",
                frame.request_id,
            )
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            EMPTY_FRAME,
            "frame has no type: set exactly one field of the `frame` oneof",
            frame.request_id,
        )
    return frame


# -- explaining a JSON frame that json_format rejected (error path only) ----------------------


def _surrogate_path(value: object, path: str) -> str | None:
    """The dotted path of the first string in `value` (key or value) with a lone surrogate."""
    if isinstance(value, str):
        return path if _LONE_SURROGATE.search(value) else None
    items: list[tuple[str, object]] = []
    if isinstance(value, dict):
        items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    for where, item in items:
        if (found := _surrogate_path(item, where)) is not None:
            return found
    return None


def _explain_json_error(obj: dict[str, Any], detail: str) -> FrameError:
    request_id = _request_id_from_obj(obj)
    oneof_keys: list[str] = []
    for key, value in obj.items():
        field = _field_by_json_key(_CLIENT_DESC, key)
        if field is None:
            return FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                UNKNOWN_FRAME_TYPE,
                f"unknown frame type {key!r}",
                request_id,
            )
        if field.containing_oneof is not None and value is not None:
            oneof_keys.append(key)
    if len(oneof_keys) > 1:
        return FrameError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            MULTIPLE_FRAME_TYPES,
            "a frame has exactly one type; got " + ", ".join(oneof_keys),
            request_id,
        )
    found = _find_shape_error(obj, _CLIENT_DESC, "")
    if found is not None:
        reason, message = found
        return FrameError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, reason, message, request_id)
    # A scalar of the wrong type or out of range: json_format's message names the field.
    message = detail.split("\n", 1)[0].strip()
    return FrameError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT, WRONG_TYPE, f"invalid value: {message}", request_id
    )


def _find_shape_error(obj: dict[str, Any], desc: Descriptor, path: str) -> tuple[str, str] | None:
    """The first unknown field or non-object / non-array value where one is required."""
    for key, value in obj.items():
        here = f"{path}.{key}" if path else key
        field = _field_by_json_key(desc, key)
        if field is None:
            return UNKNOWN_FIELD, f"unknown field {here!r}"
        if value is None:
            continue
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and _message_type(field).GetOptions().map_entry:
            if not isinstance(value, dict):
                return WRONG_TYPE, f"{here} must be a JSON object, not {_json_kind(value)}"
            value_field = _message_type(field).fields_by_name["value"]
            if _is_plain_message(value_field):
                for map_key, item in value.items():
                    found = _check_message_value(item, value_field, f"{here}[{map_key!r}]")
                    if found is not None:
                        return found
        elif field.is_repeated:
            if not isinstance(value, list):
                return WRONG_TYPE, f"{here} must be a JSON array, not {_json_kind(value)}"
            if _is_plain_message(field):
                for index, item in enumerate(value):
                    found = _check_message_value(item, field, f"{here}[{index}]")
                    if found is not None:
                        return found
        elif _is_plain_message(field):
            found = _check_message_value(value, field, here)
            if found is not None:
                return found
    return None


def _check_message_value(
    value: object, field: FieldDescriptor, path: str
) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return WRONG_TYPE, f"{path} must be a JSON object, not {_json_kind(value)}"
    return _find_shape_error(value, _message_type(field), path)


def _message_type(field: FieldDescriptor) -> Descriptor:
    desc = field.message_type
    if desc is None:  # pragma: no cover - only message fields are asked
        raise TypeError(f"{field.full_name} is not a message field")
    return desc


def _is_plain_message(field: FieldDescriptor) -> bool:
    # Well-known types (Timestamp, wrappers, ...) have their own JSON shapes; json_format checks
    # those and names the field itself.
    return field.type == FieldDescriptor.TYPE_MESSAGE and not _message_type(
        field
    ).full_name.startswith("google.protobuf.")


_FIELDS_BY_JSON_KEY: dict[str, dict[str, FieldDescriptor]] = {}


def _field_by_json_key(desc: Descriptor, key: str) -> FieldDescriptor | None:
    table = _FIELDS_BY_JSON_KEY.get(desc.full_name)
    if table is None:
        table = {f.name: f for f in desc.fields}
        table.update({f.json_name: f for f in desc.fields})
        _FIELDS_BY_JSON_KEY[desc.full_name] = table
    return table.get(key)


def _frame_json_names() -> list[str]:
    return [f.json_name for f in _CLIENT_DESC.oneofs_by_name[_FRAME_ONEOF].fields]


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# -- best-effort request ids from broken frames -----------------------------------------------

_REQUEST_ID_RE: Final = re.compile(r'"(?:requestId|request_id)"\s*:\s*"((?:[^"\\]|\\.){0,256})"')


def _request_id_from_obj(obj: dict[str, Any]) -> str:
    for key in ("requestId", "request_id"):
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return ""


def _request_id_from_text(text: str) -> str:
    """The request_id of JSON too broken to parse, when a plain string one can be spotted."""
    match = _REQUEST_ID_RE.search(text)
    if match is None:
        return ""
    try:
        value = json.loads(f'"{match.group(1)}"')
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def _request_id_from_wire(data: bytes) -> str:
    """Field 1 (request_id) of a binary ClientFrame that failed to parse, if it is readable."""
    try:
        for number, wire_type, start, end in _wire_fields(data, 0, len(data)):
            if number == 1 and wire_type == _LEN:
                return data[start:end].decode("utf-8")
    except (_Malformed, UnicodeDecodeError):
        pass
    return ""


# -- a minimal protobuf wire walker, for explaining binary frames protobuf rejected -----------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Malformed(Exception):
    pass


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _wire_fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yields (field number, wire type, value start, value end) of one message's fields."""
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed
        start = pos
        if wire_type == _VARINT:
            _, pos = _read_varint(data, pos, end)
        elif wire_type == _I64:
            pos += 8
        elif wire_type == _I32:
            pos += 4
        elif wire_type == _LEN:
            length, start = _read_varint(data, pos, end)
            pos = start + length
        else:  # groups are not used by proto3
            raise _Malformed
        if pos > end:
            raise _Malformed
        yield number, wire_type, start, pos


def _invalid_utf8_path(
    data: bytes, desc: Descriptor, pos: int = 0, end: int | None = None
) -> str | None:
    """The path of the first string field holding invalid UTF-8, like `send_message.body`."""
    stop = len(data) if end is None else end
    seen: dict[int, int] = {}
    for number, wire_type, start, value_end in _wire_fields(data, pos, stop):
        field = desc.fields_by_number.get(number)
        if field is None or wire_type != _LEN:
            continue
        index = seen.get(number, 0)
        seen[number] = index + 1
        name = f"{field.name}[{index}]" if field.is_repeated else field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                data[start:value_end].decode("utf-8")
            except UnicodeDecodeError:
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = _invalid_utf8_path(data, _message_type(field), start, value_end)
            if inner is not None:
                return f"{name}.{inner}"
    return None


def _unknown_top_level_field(data: bytes) -> int | None:
    try:
        for number, _wire_type, _start, _end in _wire_fields(data, 0, len(data)):
            if number not in _CLIENT_DESC.fields_by_number:
                return number
    except _Malformed:
        pass
    return None


# -- other checks on decoded frames -------------------------------------------------------------


MAX_CONVERSATION_ID_CHARS: Final = LIMITS.max_id_chars


def validate_cursors(
    cursors: Sequence[types_pb2.ConversationCursor], path: str
) -> FrameError | None:
    """Cursors must name a conversation; `path` names the list (like `resume.cursors`)."""
    for index, cursor in enumerate(cursors):
        if not 0 < len(cursor.conversation_id) <= MAX_CONVERSATION_ID_CHARS:
            return FrameError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                INVALID_VALUE,
                f"{path}[{index}].conversation_id must be 1 to "
                f"{MAX_CONVERSATION_ID_CHARS} characters",
            )
    return None


def bearer_token_from_subprotocols(offered: Iterable[str]) -> tuple[bool, str | None]:
    """(whether `chatmesh.v1` is offered, the token of a `bearer.<token>` subprotocol or None)."""
    has_protocol = False
    token: str | None = None
    for item in offered:
        if item == SUBPROTOCOL:
            has_protocol = True
        elif item.startswith(BEARER_PREFIX) and token is None:
            token = item[len(BEARER_PREFIX) :]
    return has_protocol, token


# ---------------------------------------------------------------------------------------------
# Status codes

# gRPC status codes and ErrorCode share their numbers (gateway.proto says so).
_ERROR_CODE_BY_STATUS: Final[dict[grpc.StatusCode, ErrorCode]] = {
    status: cast(ErrorCode, status.value[0])
    for status in grpc.StatusCode
    if status is not grpc.StatusCode.OK
}


def error_code_for_status(status: grpc.StatusCode | None) -> ErrorCode:
    """The ErrorCode of a gRPC status (UNKNOWN for OK or None, which are not errors)."""
    if status is None:
        return ErrorCode.ERROR_CODE_UNKNOWN
    return _ERROR_CODE_BY_STATUS.get(status, ErrorCode.ERROR_CODE_UNKNOWN)


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass(frozen=True, slots=True)
class ServerSlot:
    """One case of ServerFrame's `frame` oneof, for writing a payload that is already serialized."""

    name: str
    json_name: str
    message_class: type[Message]
    # The field's tag byte(s), wire type 2.
    tag: bytes


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _make_slot(field: FieldDescriptor) -> ServerSlot:
    message_class = getattr(ServerFrame(), field.name).__class__
    return ServerSlot(
        field.name, field.json_name, message_class, _encode_varint(field.number << 3 | _LEN)
    )


SERVER_SLOTS: Final[dict[str, ServerSlot]] = {
    field.name: _make_slot(field) for field in _SERVER_DESC.oneofs_by_name[_FRAME_ONEOF].fields
}
_EVENT_SLOT: Final = SERVER_SLOTS["event"]
_REQUEST_ID_TAG: Final = _encode_varint(1 << 3 | _LEN)
# SubscribeEventsResponse.event is field 1.
_RESPONSE_EVENT_TAG: Final = _encode_varint(1 << 3 | _LEN)


# json.dumps with options builds an encoder per call; one built once writes the same text.
_dumps: Final[Callable[[dict[str, Any]], str]] = json.JSONEncoder(
    ensure_ascii=False, separators=_JSON_SEPARATORS
).encode


def encode_frame(frame: ServerFrame, binary: bool) -> Encoded:
    """A ServerFrame as binary protobuf or proto3 JSON text."""
    if binary:
        return frame.SerializeToString()
    return _dumps(json_format.MessageToDict(frame))


def encode_payload(request_id: str, slot: ServerSlot, payload: bytes, binary: bool) -> Encoded:
    """A ServerFrame whose oneof case `slot` holds the serialized message `payload`.

    Binary frames are assembled from the bytes as they came from gRPC, without a parse.
    """
    if binary:
        parts = []
        if request_id:
            rid = request_id.encode("utf-8")
            parts += [_REQUEST_ID_TAG, _encode_varint(len(rid)), rid]
        parts += [slot.tag, _encode_varint(len(payload)), payload]
        return b"".join(parts)
    body = fast_json.to_json_object(slot.message_class.FromString(payload))
    if request_id:
        return _dumps({"requestId": request_id, slot.json_name: body})
    return _dumps({slot.json_name: body})


def encode_event(response: bytes, event: Message, binary: bool) -> Encoded:
    """A pushed `event` frame (request_id empty) for one SubscribeEventsResponse.

    `response` is the response as serialized by chat_service and `event` its parsed `event` case.
    A binary frame reuses the serialized event: a response holding only its field 1 is that
    field's length and bytes behind a different tag, so only the tag changes.
    """
    if binary:
        if response[:1] == _RESPONSE_EVENT_TAG:
            try:
                length, start = _read_varint(response, 1, len(response))
            except _Malformed:
                length, start = -1, 0
            if start + length == len(response):
                return b"".join((_EVENT_SLOT.tag, memoryview(response)[1:]))
        payload = event.SerializeToString()
        return b"".join((_EVENT_SLOT.tag, _encode_varint(len(payload)), payload))
    return _dumps({_EVENT_SLOT.json_name: fast_json.to_json_object(event)})


class EventFrames:
    """Event frames encoded once per event and encoding, for every socket of a gateway.

    One message reaches each member's socket as the same event; encoding it (JSON via
    MessageToDict above all) per socket was the gateway's main per-delivery cost. A logged event
    is keyed by (conversation_id, seq, encoding); a live signal (seq 0: receipts, creations,
    typing) also by its serialized bytes. Frames are immutable str/bytes; the cache is bounded
    (oldest first).
    """

    __slots__ = ("_frames", "_max_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        self._frames: dict[tuple[str, int, bool, bytes], Encoded] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._frames)

    def encode(self, event: events_pb2.ConversationEvent, binary: bool) -> Encoded:
        seq = event.seq
        content = b"" if seq else event.SerializeToString(deterministic=True)
        key = (event.conversation_id, seq, binary, content)
        frame = self._frames.get(key)
        if frame is None:
            frame = encode_event(b"", event, binary)
            if len(self._frames) >= self._max_entries:
                del self._frames[next(iter(self._frames))]
            self._frames[key] = frame
        return frame


# WatchResponse case -> the ServerFrame case that pushes it. Typing is not among them: it arrives
# in the event stream as a ConversationEvent with `typing_changed` (an `event` frame); a
# WatchResponse.typing item (an older presence_service) is dropped, and `typing_event` frames are
# no longer sent.
_WATCH_SLOTS: Final = {"presence": "presence_event"}


def encode_watch_response(
    response: presence_service_pb2.WatchResponse, binary: bool
) -> Encoded | None:
    """A pushed `presence_event` frame for one PresenceService.Watch item.

    None for an item of a kind this gateway does not know (a newer presence_service) and for a
    typing item (an older presence_service): typing comes through the event stream.
    """
    which = response.WhichOneof("event")
    slot = _WATCH_SLOTS.get(which or "")
    if which is None or slot is None:
        return None
    frame = ServerFrame()
    getattr(frame, slot).CopyFrom(getattr(response, which))
    return encode_frame(frame, binary)


def encode_error(
    request_id: str,
    code: ErrorCode,
    message: str,
    binary: bool,
    retry_after_ms: int = 0,
) -> Encoded:
    frame = ServerFrame(request_id=request_id)
    frame.error.code = code
    frame.error.message = message
    if retry_after_ms:
        frame.error.retry_after_ms = retry_after_ms
    return encode_frame(frame, binary)


def encode_frame_error(error: FrameError, binary: bool) -> Encoded:
    return encode_error(error.request_id, error.code, error.message, binary)


def decode_server_frame(data: str | bytes) -> ServerFrame:
    """A ServerFrame from either encoding (for clients and tests; unknown fields are errors)."""
    frame = ServerFrame()
    if isinstance(data, str):
        json_format.Parse(data, frame)
    else:
        frame.ParseFromString(data)
    return frame
