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
