from chatmesh.chat.v1 import types_pb2 as _types_pb2
from chatmesh.events.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeEventsRequest(_message.Message):
    __slots__ = ("cursors", "device_id")
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    cursors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ConversationCursor]
    device_id: str
    def __init__(self, cursors: _Optional[_Iterable[_Union[_types_pb2.ConversationCursor, _Mapping]]] = ..., device_id: _Optional[str] = ...) -> None: ...

class SubscribeEventsResponse(_message.Message):
    __slots__ = ("event", "caught_up")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.ConversationEvent
    caught_up: CaughtUp
    def __init__(self, event: _Optional[_Union[_events_pb2.ConversationEvent, _Mapping]] = ..., caught_up: _Optional[_Union[CaughtUp, _Mapping]] = ...) -> None: ...

class CaughtUp(_message.Message):
    __slots__ = ("revoked_conversation_ids", "baselines")
    REVOKED_CONVERSATION_IDS_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    revoked_conversation_ids: _containers.RepeatedScalarFieldContainer[str]
    baselines: _containers.RepeatedCompositeFieldContainer[_types_pb2.ConversationCursor]
    def __init__(self, revoked_conversation_ids: _Optional[_Iterable[str]] = ..., baselines: _Optional[_Iterable[_Union[_types_pb2.ConversationCursor, _Mapping]]] = ...) -> None: ...

class SubscribeEventsMultiplexedRequest(_message.Message):
    __slots__ = ("open", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: OpenEventStream
    close: CloseEventStream
    def __init__(self, open: _Optional[_Union[OpenEventStream, _Mapping]] = ..., close: _Optional[_Union[CloseEventStream, _Mapping]] = ...) -> None: ...

class OpenEventStream(_message.Message):
    __slots__ = ("stream_id", "token", "request")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    token: str
    request: SubscribeEventsRequest
    def __init__(self, stream_id: _Optional[int] = ..., token: _Optional[str] = ..., request: _Optional[_Union[SubscribeEventsRequest, _Mapping]] = ...) -> None: ...

class CloseEventStream(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    def __init__(self, stream_id: _Optional[int] = ...) -> None: ...

class SubscribeEventsMultiplexedResponse(_message.Message):
    __slots__ = ("stream_id", "response", "ended")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    response: SubscribeEventsResponse
    ended: EventStreamEnded
    def __init__(self, stream_id: _Optional[int] = ..., response: _Optional[_Union[SubscribeEventsResponse, _Mapping]] = ..., ended: _Optional[_Union[EventStreamEnded, _Mapping]] = ...) -> None: ...

class EventStreamEnded(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
