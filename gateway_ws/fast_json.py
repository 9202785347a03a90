"""Proto3 JSON for the hot frames without the generic codec's reflection: pure code, no I/O.

Every send is decoded from a text frame, answered with an ack and pushed to each member as an
event; with `json_format` those three conversions were the gateway's largest JSON cost (it walks
descriptors and dispatches per field on every call). Here they are straight-line code that
yields exactly what `json_format` yields:

* encoders build the same dict as `json_format.MessageToDict` (lowerCamelCase names in field
  number order, 64-bit integers as strings, enums by name or by number when unknown, default
  values left out, timestamps as `Timestamp.ToJsonString` prints them), so the one JSON
  encoder of frames.py writes the same text, escaping included;
* the decoder takes the plain shapes of the hot client frames (`sendMessage`, `markRead`,
  `markDelivered`) and answers None for anything else, and for anything it is unsure of
  (unknown or repeated keys, null, numbers as floats, unknown enum names, strings protobuf
  refuses), so the generic codec decides, error messages included.

A message type whose fields differ from the ones written here (a field added to the proto) is
left to `json_format`, so a new field is never dropped from the wire; tests/gateway/
test_fast_json.py proves each encoder against `json_format` on random messages and fails when
one is switched off that way.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final, cast

from chatmesh.chat.v1 import chat_service_pb2, types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

JsonObject = dict[str, Any]

_UINT64_END: Final = 1 << 64


def _enum_names(enum: EnumDescriptor) -> dict[int, str]:
    return {value.number: value.name for value in enum.values}


_MESSAGE_KIND: Final = _enum_names(types_pb2.MessageKind.DESCRIPTOR)
_MESSAGE_KIND_BY_NAME: Final = {name: number for number, name in _MESSAGE_KIND.items()}


# ---------------------------------------------------------------------------------------------
# Encoding

# The range Timestamp.ToJsonString accepts (0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z).
_SECONDS_MIN: Final = -62_135_596_800
_SECONDS_MAX: Final = 253_402_300_799
_EPOCH: Final = datetime.date(1970, 1, 1)


@lru_cache(maxsize=64)
def _date(days: int) -> str:
    return (_EPOCH + datetime.timedelta(days)).isoformat()


def timestamp_text(ts: Timestamp) -> str:
    """`ts.ToJsonString()`: RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, without its
    datetime arithmetic per call (the date of a day is formatted once)."""
    seconds, nanos = ts.seconds, ts.nanos
    if not (_SECONDS_MIN <= seconds <= _SECONDS_MAX and 0 <= nanos < 1_000_000_000):
        return ts.ToJsonString()  # raises its ValueError
    days, second = divmod(seconds, 86_400)
    hours, second = divmod(second, 3600)
    minutes, second = divmod(second, 60)
    text = f"{_date(days)}T{hours:02d}:{minutes:02d}:{second:02d}"
    if not nanos:
        return text + "Z"
    if not nanos % 1_000_000:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if not nanos % 1_000:
        return f"{text}.{nanos // 1_000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def _attachment(a: types_pb2.Attachment) -> JsonObject:
    js: JsonObject = {}
    if a.media_id:
        js["mediaId"] = a.media_id
    if a.content_type:
        js["contentType"] = a.content_type
    if a.size_bytes:
        js["sizeBytes"] = str(a.size_bytes)
    if a.file_name:
        js["fileName"] = a.file_name
    if a.width:
        js["width"] = a.width
    if a.height:
        js["height"] = a.height
    if a.blurhash:
        js["blurhash"] = a.blurhash
    if a.thumbnails:
        js["thumbnails"] = list(a.thumbnails)
    return js


def _message(m: types_pb2.Message) -> JsonObject:
    js: JsonObject = {}
    if m.conversation_id:
        js["conversationId"] = m.conversation_id
    if m.seq:
        js["seq"] = str(m.seq)
    if m.message_id:
        js["messageId"] = m.message_id
    if m.sender_id:
        js["senderId"] = m.sender_id
    if m.HasField("created_at"):
        js["createdAt"] = timestamp_text(m.created_at)
    kind = m.kind
    if kind:
        js["kind"] = _MESSAGE_KIND.get(kind, kind)
    if m.body:
        js["body"] = m.body
    if m.attachments:
        js["attachments"] = list(m.attachments)
    if m.reply_to_seq:
        js["replyToSeq"] = str(m.reply_to_seq)
    if m.version:
        js["version"] = m.version
    if m.HasField("edited_at"):
        js["editedAt"] = timestamp_text(m.edited_at)
    if m.deleted:
        js["deleted"] = True
    if m.client_msg_id:
        js["clientMsgId"] = m.client_msg_id
    if m.attachment_info:
        js["attachmentInfo"] = [_object(a) for a in m.attachment_info]
    if m.mentions:
        js["mentions"] = list(m.mentions)
    return js


def _message_holder(holder: events_pb2.MessageCreated) -> JsonObject:
    """MessageCreated, MessageEdited and MessageDeleted: one `message` field each."""
    if holder.HasField("message"):
        return {"message": _object(holder.message)}
    return {}


def _receipt_moved(r: events_pb2.ReceiptMoved) -> JsonObject:
    js: JsonObject = {}
    if r.user_id:
        js["userId"] = r.user_id
    if r.last_read_seq:
        js["lastReadSeq"] = str(r.last_read_seq)
    if r.last_delivered_seq:
        js["lastDeliveredSeq"] = str(r.last_delivered_seq)
    return js


def _typing_changed(t: events_pb2.TypingChanged) -> JsonObject:
    js: JsonObject = {}
    if t.user_id:
        js["userId"] = t.user_id
    if t.typing:
        js["typing"] = True
    if t.HasField("expires_at"):
        js["expiresAt"] = timestamp_text(t.expires_at)
    return js


_EVENT_PAYLOAD_NAMES: Final = {
    field.name: field.json_name
    for field in cast(Descriptor, events_pb2.ConversationEvent.DESCRIPTOR)
    .oneofs_by_name["payload"]
    .fields
}


def _event(e: events_pb2.ConversationEvent) -> JsonObject:
    js: JsonObject = {}
    if e.conversation_id:
        js["conversationId"] = e.conversation_id
    if e.seq:
        js["seq"] = str(e.seq)
    if e.HasField("occurred_at"):
        js["occurredAt"] = timestamp_text(e.occurred_at)
    if e.actor_id:
        js["actorId"] = e.actor_id
    which = e.WhichOneof("payload")
    if which is not None:
        js[_EVENT_PAYLOAD_NAMES[which]] = _object(getattr(e, which))
    return js


def _send_message_response(r: chat_service_pb2.SendMessageResponse) -> JsonObject:
    js: JsonObject = {}
    if r.HasField("message"):
        js["message"] = _object(r.message)
    if r.duplicate:
        js["duplicate"] = True
    if r.held:
        js["held"] = True
    return js


def _mark_read_response(r: chat_service_pb2.MarkReadResponse) -> JsonObject:
    js: JsonObject = {}
    if r.last_read_seq:
        js["lastReadSeq"] = str(r.last_read_seq)
    if r.unread_count:
        js["unreadCount"] = str(r.unread_count)
    return js


def _mark_delivered_response(r: chat_service_pb2.MarkDeliveredResponse) -> JsonObject:
    if r.last_delivered_seq:
        return {"lastDeliveredSeq": str(r.last_delivered_seq)}
    return {}


_Encoder = Callable[[Any], JsonObject]

# message class -> (its encoder, the field names the encoder writes, in field number order)
_WRITTEN: Final[dict[type[Message], tuple[_Encoder, tuple[str, ...]]]] = {
    types_pb2.Attachment: (_attachment, ("media_id", "content_type", "size_bytes", "file_name",
                                         "width", "height", "blurhash", "thumbnails")),
    types_pb2.Message: (_message, ("conversation_id", "seq", "message_id", "sender_id",
                                   "created_at", "kind", "body", "attachments", "reply_to_seq",
                                   "version", "edited_at", "deleted", "client_msg_id",
                                   "attachment_info", "mentions")),
    events_pb2.MessageCreated: (_message_holder, ("message",)),
    events_pb2.MessageEdited: (_message_holder, ("message",)),
    events_pb2.MessageDeleted: (_message_holder, ("message",)),
    events_pb2.ReceiptMoved: (_receipt_moved, ("user_id", "last_read_seq", "last_delivered_seq")),
    events_pb2.TypingChanged: (_typing_changed, ("user_id", "typing", "expires_at")),
    events_pb2.ConversationEvent: (_event, ("conversation_id", "seq", "occurred_at", "actor_id",
                                            "message_created", "message_edited",
                                            "message_deleted", "membership_changed",
                                            "receipt_moved", "conversation_created",
                                            "conversation_updated", "typing_changed")),
    chat_service_pb2.SendMessageResponse: (_send_message_response,
                                           ("message", "duplicate", "held")),
    chat_service_pb2.MarkReadResponse: (_mark_read_response, ("last_read_seq", "unread_count")),
    chat_service_pb2.MarkDeliveredResponse: (_mark_delivered_response, ("last_delivered_seq",)),
}  # fmt: skip


def _field_names(message_class: type[Message]) -> tuple[str, ...]:
    return tuple(f.name for f in cast(Descriptor, message_class.DESCRIPTOR).fields)


# The encoders whose message types still have exactly the fields written above.
ENCODERS: Final[dict[type[Message], _Encoder]] = {
    message_class: encoder
    for message_class, (encoder, names) in _WRITTEN.items()
    if _field_names(message_class) == names
}


def _object(message: Message) -> JsonObject:
    encoder = ENCODERS.get(type(message))
    if encoder is None:
        return json_format.MessageToDict(message)
    return encoder(message)


def to_json_object(message: Message) -> JsonObject:
    """What `json_format.MessageToDict(message)` returns, faster for the hot message types.

    A message the encoders cannot write (a timestamp out of range, say) goes to json_format,
    so its error is the generic codec's own.
    """
    try:
        return _object(message)
    except ValueError:
        return json_format.MessageToDict(message)


# ---------------------------------------------------------------------------------------------
# Decoding

ClientFrame = gateway_pb2.ClientFrame
# The constructor called with the case as a keyword (the stubs type each case apart).
_new_client_frame: Final[Callable[..., gateway_pb2.ClientFrame]] = ClientFrame


class _Generic(Exception):
    """The frame is not of a plain shape: the generic codec decides."""


def _string(value: object) -> str:
    if type(value) is not str:
        raise _Generic
    return value


def _uint64(value: object) -> int:
    # Numbers and decimal strings, as json_format reads them; floats, signs, spaces and the
    # like are left to it.
    if type(value) is int:
        number = value
    elif type(value) is str and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise _Generic
    if not 0 <= number < _UINT64_END:
        raise _Generic
    return number


def _strings(value: object) -> list[str]:
    if type(value) is not list or any(type(item) is not str for item in value):
        raise _Generic
    return cast(list[str], value)


def _message_kind(value: object) -> int:
    if type(value) is not str or value not in _MESSAGE_KIND_BY_NAME:
        raise _Generic
    return _MESSAGE_KIND_BY_NAME[value]


_Reader = Callable[[object], object]

# JSON key (lowerCamelCase and the proto name) -> (field name, reader), per request type.
_SEND_FIELDS: Final[dict[str, tuple[str, _Reader]]] = {}
for _name, _reader in (
    ("conversation_id", _string),
    ("client_msg_id", _string),
    ("body", _string),
    ("kind", _message_kind),
    ("attachments", _strings),
    ("reply_to_seq", _uint64),
    ("mentions", _strings),
):
    _field = cast(Descriptor, chat_service_pb2.SendMessageRequest.DESCRIPTOR).fields_by_name[_name]
    _SEND_FIELDS[_name] = _SEND_FIELDS[_field.json_name] = (_name, _reader)

_MARK_FIELDS: Final[dict[str, tuple[str, _Reader]]] = {
    "conversationId": ("conversation_id", _string),
    "conversation_id": ("conversation_id", _string),
    "seq": ("seq", _uint64),
}

# JSON key of the ClientFrame case -> (case name, request class, the request's fields).
_FRAMES: Final[dict[str, tuple[str, type[Message], dict[str, tuple[str, _Reader]]]]] = {}
for _case, _request, _fields in (
    ("send_message", chat_service_pb2.SendMessageRequest, _SEND_FIELDS),
    ("mark_read", chat_service_pb2.MarkReadRequest, _MARK_FIELDS),
    ("mark_delivered", chat_service_pb2.MarkDeliveredRequest, _MARK_FIELDS),
):
    _json_name = cast(Descriptor, ClientFrame.DESCRIPTOR).fields_by_name[_case].json_name
    _FRAMES[_case] = _FRAMES[_json_name] = (_case, _request, _fields)

_REQUEST_ID_KEYS: Final = frozenset({"requestId", "request_id"})


def decode_hot_frame(obj: JsonObject) -> gateway_pb2.ClientFrame | None:
    """The ClientFrame of a parsed JSON object of a plain send / markRead / markDelivered
    frame, as json_format would parse it; None when the generic codec must decide."""
    try:
        return _decode(obj)
    except (_Generic, ValueError, TypeError):
        # ValueError: a string protobuf refuses (a lone surrogate from a \ud800 escape).
        return None


def _decode(obj: JsonObject) -> gateway_pb2.ClientFrame | None:
    request_id: str | None = None
    case: tuple[str, type[Message], dict[str, tuple[str, _Reader]]] | None = None
    body: object = None
    for key, value in obj.items():
        if key in _REQUEST_ID_KEYS:
            if request_id is not None:
                return None
            request_id = _string(value)
        else:
            found = _FRAMES.get(key)
            if found is None or case is not None or type(value) is not dict:
                return None
            case, body = found, value
    if case is None:
        return None
    name, request_class, fields = case
    values: dict[str, object] = {}
    for key, value in cast(JsonObject, body).items():
        field = fields.get(key)
        if field is None or field[0] in values:
            return None
        values[field[0]] = field[1](value)
    request = request_class(**values)
    return _new_client_frame(request_id=request_id or "", **{name: request})
