import datetime

from chatmesh.chat.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MembershipChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBERSHIP_CHANGE_UNSPECIFIED: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_ADDED: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_REMOVED: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_LEFT: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_ROLE_CHANGED: _ClassVar[MembershipChange]
MEMBERSHIP_CHANGE_UNSPECIFIED: MembershipChange
MEMBERSHIP_CHANGE_ADDED: MembershipChange
MEMBERSHIP_CHANGE_REMOVED: MembershipChange
MEMBERSHIP_CHANGE_LEFT: MembershipChange
MEMBERSHIP_CHANGE_ROLE_CHANGED: MembershipChange

class ConversationEvent(_message.Message):
    __slots__ = ("conversation_id", "seq", "occurred_at", "actor_id", "message_created", "message_edited", "message_deleted", "membership_changed", "receipt_moved", "conversation_created", "conversation_updated", "typing_changed")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CREATED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_EDITED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DELETED_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_MOVED_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_CREATED_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_UPDATED_FIELD_NUMBER: _ClassVar[int]
    TYPING_CHANGED_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    occurred_at: _timestamp_pb2.Timestamp
    actor_id: str
    message_created: MessageCreated
    message_edited: MessageEdited
    message_deleted: MessageDeleted
    membership_changed: MembershipChanged
    receipt_moved: ReceiptMoved
    conversation_created: ConversationCreated
    conversation_updated: ConversationUpdated
    typing_changed: TypingChanged
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_id: _Optional[str] = ..., message_created: _Optional[_Union[MessageCreated, _Mapping]] = ..., message_edited: _Optional[_Union[MessageEdited, _Mapping]] = ..., message_deleted: _Optional[_Union[MessageDeleted, _Mapping]] = ..., membership_changed: _Optional[_Union[MembershipChanged, _Mapping]] = ..., receipt_moved: _Optional[_Union[ReceiptMoved, _Mapping]] = ..., conversation_created: _Optional[_Union[ConversationCreated, _Mapping]] = ..., conversation_updated: _Optional[_Union[ConversationUpdated, _Mapping]] = ..., typing_changed: _Optional[_Union[TypingChanged, _Mapping]] = ...) -> None: ...

class MessageCreated(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ...) -> None: ...

class MessageEdited(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ...) -> None: ...

class MessageDeleted(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ...) -> None: ...

class MembershipChanged(_message.Message):
    __slots__ = ("change", "user_id", "role", "member_count")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    change: MembershipChange
    user_id: str
    role: _types_pb2.Role
    member_count: int
    def __init__(self, change: _Optional[_Union[MembershipChange, str]] = ..., user_id: _Optional[str] = ..., role: _Optional[_Union[_types_pb2.Role, str]] = ..., member_count: _Optional[int] = ...) -> None: ...

class ReceiptMoved(_message.Message):
    __slots__ = ("user_id", "last_read_seq", "last_delivered_seq")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    last_read_seq: int
    last_delivered_seq: int
    def __init__(self, user_id: _Optional[str] = ..., last_read_seq: _Optional[int] = ..., last_delivered_seq: _Optional[int] = ...) -> None: ...

class ConversationCreated(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.Conversation
    def __init__(self, conversation: _Optional[_Union[_types_pb2.Conversation, _Mapping]] = ...) -> None: ...

class ConversationUpdated(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.Conversation
    def __init__(self, conversation: _Optional[_Union[_types_pb2.Conversation, _Mapping]] = ...) -> None: ...

class TypingChanged(_message.Message):
    __slots__ = ("user_id", "typing", "expires_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    typing: bool
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., typing: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
