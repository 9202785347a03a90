import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_STATUS_UNSPECIFIED: _ClassVar[UserStatus]
    USER_STATUS_AVAILABLE: _ClassVar[UserStatus]
    USER_STATUS_AWAY: _ClassVar[UserStatus]
    USER_STATUS_INVISIBLE: _ClassVar[UserStatus]

class PresenceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESENCE_STATE_UNSPECIFIED: _ClassVar[PresenceState]
    PRESENCE_STATE_ONLINE: _ClassVar[PresenceState]
    PRESENCE_STATE_AWAY: _ClassVar[PresenceState]
    PRESENCE_STATE_OFFLINE: _ClassVar[PresenceState]
USER_STATUS_UNSPECIFIED: UserStatus
USER_STATUS_AVAILABLE: UserStatus
USER_STATUS_AWAY: UserStatus
USER_STATUS_INVISIBLE: UserStatus
PRESENCE_STATE_UNSPECIFIED: PresenceState
PRESENCE_STATE_ONLINE: PresenceState
PRESENCE_STATE_AWAY: PresenceState
PRESENCE_STATE_OFFLINE: PresenceState

class UserPresence(_message.Message):
    __slots__ = ("user_id", "state", "last_seen", "custom_text", "status")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TEXT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    state: PresenceState
    last_seen: _timestamp_pb2.Timestamp
    custom_text: str
    status: UserStatus
    def __init__(self, user_id: _Optional[str] = ..., state: _Optional[_Union[PresenceState, str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., custom_text: _Optional[str] = ..., status: _Optional[_Union[UserStatus, str]] = ...) -> None: ...

class TypingEvent(_message.Message):
    __slots__ = ("conversation_id", "user_id", "typing", "expires_at")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    typing: bool
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ..., typing: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("connection_id",)
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    def __init__(self, connection_id: _Optional[str] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("ttl", "heartbeat_interval", "presence")
    TTL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    ttl: _duration_pb2.Duration
    heartbeat_interval: _duration_pb2.Duration
    presence: UserPresence
    def __init__(self, ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., presence: _Optional[_Union[UserPresence, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("connection_id", "known_status")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_STATUS_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    known_status: UserStatus
    def __init__(self, connection_id: _Optional[str] = ..., known_status: _Optional[_Union[UserStatus, str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: UserStatus
    def __init__(self, status: _Optional[_Union[UserStatus, str]] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("connection_id",)
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    def __init__(self, connection_id: _Optional[str] = ...) -> None: ...

class DisconnectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetStatusRequest(_message.Message):
    __slots__ = ("status", "custom_text")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_TEXT_FIELD_NUMBER: _ClassVar[int]
    status: UserStatus
    custom_text: str
    def __init__(self, status: _Optional[_Union[UserStatus, str]] = ..., custom_text: _Optional[str] = ...) -> None: ...

class SetStatusResponse(_message.Message):
    __slots__ = ("presence",)
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    presence: UserPresence
    def __init__(self, presence: _Optional[_Union[UserPresence, _Mapping]] = ...) -> None: ...

class GetPresenceRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPresenceResponse(_message.Message):
    __slots__ = ("presences",)
    PRESENCES_FIELD_NUMBER: _ClassVar[int]
    presences: _containers.RepeatedCompositeFieldContainer[UserPresence]
    def __init__(self, presences: _Optional[_Iterable[_Union[UserPresence, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("presence", "typing")
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    presence: UserPresence
    typing: TypingEvent
    def __init__(self, presence: _Optional[_Union[UserPresence, _Mapping]] = ..., typing: _Optional[_Union[TypingEvent, _Mapping]] = ...) -> None: ...

class SendTypingRequest(_message.Message):
    __slots__ = ("conversation_id", "typing")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    typing: bool
    def __init__(self, conversation_id: _Optional[str] = ..., typing: _Optional[bool] = ...) -> None: ...

class SendTypingResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetOnlineUsersRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOnlineUsersResponse(_message.Message):
    __slots__ = ("online_user_ids",)
    ONLINE_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    online_user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, online_user_ids: _Optional[_Iterable[str]] = ...) -> None: ...
