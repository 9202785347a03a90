from chatmesh.chat.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FilterPresenceAudienceRequest(_message.Message):
    __slots__ = ("subject_user_ids", "viewer_user_id")
    SUBJECT_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    subject_user_ids: _containers.RepeatedScalarFieldContainer[str]
    viewer_user_id: str
    def __init__(self, subject_user_ids: _Optional[_Iterable[str]] = ..., viewer_user_id: _Optional[str] = ...) -> None: ...

class FilterPresenceAudienceResponse(_message.Message):
    __slots__ = ("visible_user_ids",)
    VISIBLE_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    visible_user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, visible_user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckTypingAudienceRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class CheckTypingAudienceResponse(_message.Message):
    __slots__ = ("recipient_ids",)
    RECIPIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    recipient_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipient_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSearchableConversationsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListSearchableConversationsResponse(_message.Message):
    __slots__ = ("conversation_ids",)
    CONVERSATION_IDS_FIELD_NUMBER: _ClassVar[int]
    conversation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MessageRef(_message.Message):
    __slots__ = ("conversation_id", "seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class GetSearchHitsRequest(_message.Message):
    __slots__ = ("user_id", "refs")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    refs: _containers.RepeatedCompositeFieldContainer[MessageRef]
    def __init__(self, user_id: _Optional[str] = ..., refs: _Optional[_Iterable[_Union[MessageRef, _Mapping]]] = ...) -> None: ...

class GetSearchHitsResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[_types_pb2.Message, _Mapping]]] = ...) -> None: ...

class GetPushAudienceRequest(_message.Message):
    __slots__ = ("conversation_id", "seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class PushAudienceMember(_message.Message):
    __slots__ = ("user_id", "blocked_sender", "muted", "last_read_seq")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_SENDER_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    LAST_READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    blocked_sender: bool
    muted: bool
    last_read_seq: int
    def __init__(self, user_id: _Optional[str] = ..., blocked_sender: _Optional[bool] = ..., muted: _Optional[bool] = ..., last_read_seq: _Optional[int] = ...) -> None: ...

class GetPushAudienceResponse(_message.Message):
    __slots__ = ("conversation", "message", "members")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.Conversation
    message: _types_pb2.Message
    members: _containers.RepeatedCompositeFieldContainer[PushAudienceMember]
    def __init__(self, conversation: _Optional[_Union[_types_pb2.Conversation, _Mapping]] = ..., message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ..., members: _Optional[_Iterable[_Union[PushAudienceMember, _Mapping]]] = ...) -> None: ...

class GetUnreadTotalsRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UnreadTotal(_message.Message):
    __slots__ = ("user_id", "unread")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    unread: int
    def __init__(self, user_id: _Optional[str] = ..., unread: _Optional[int] = ...) -> None: ...

class GetUnreadTotalsResponse(_message.Message):
    __slots__ = ("totals",)
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    totals: _containers.RepeatedCompositeFieldContainer[UnreadTotal]
    def __init__(self, totals: _Optional[_Iterable[_Union[UnreadTotal, _Mapping]]] = ...) -> None: ...

class CheckMembershipRequest(_message.Message):
    __slots__ = ("user_id", "conversation_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    conversation_id: str
    def __init__(self, user_id: _Optional[str] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class CheckMembershipResponse(_message.Message):
    __slots__ = ("member", "kind")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    member: bool
    kind: _types_pb2.ConversationKind
    def __init__(self, member: _Optional[bool] = ..., kind: _Optional[_Union[_types_pb2.ConversationKind, str]] = ...) -> None: ...

class CheckUserActiveRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class CheckUserActiveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
