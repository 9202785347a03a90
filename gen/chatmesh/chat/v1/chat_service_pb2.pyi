from chatmesh.chat.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HistoryDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_DIRECTION_UNSPECIFIED: _ClassVar[HistoryDirection]
    HISTORY_DIRECTION_BACKWARD: _ClassVar[HistoryDirection]
    HISTORY_DIRECTION_FORWARD: _ClassVar[HistoryDirection]
HISTORY_DIRECTION_UNSPECIFIED: HistoryDirection
HISTORY_DIRECTION_BACKWARD: HistoryDirection
HISTORY_DIRECTION_FORWARD: HistoryDirection

class CreateConversationRequest(_message.Message):
    __slots__ = ("kind", "title", "member_ids")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    kind: _types_pb2.ConversationKind
    title: str
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[_types_pb2.ConversationKind, str]] = ..., title: _Optional[str] = ..., member_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateConversationResponse(_message.Message):
    __slots__ = ("conversation", "created")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.ConversationView
    created: bool
    def __init__(self, conversation: _Optional[_Union[_types_pb2.ConversationView, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.ConversationView
    def __init__(self, conversation: _Optional[_Union[_types_pb2.ConversationView, _Mapping]] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "include_archived")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    include_archived: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_archived: _Optional[bool] = ...) -> None: ...

class ListConversationsResponse(_message.Message):
    __slots__ = ("conversations", "next_page_token")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[_types_pb2.ConversationView]
    next_page_token: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[_types_pb2.ConversationView, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "title", "archived")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    title: str
    archived: bool
    def __init__(self, conversation_id: _Optional[str] = ..., title: _Optional[str] = ..., archived: _Optional[bool] = ...) -> None: ...

class UpdateConversationResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: _types_pb2.Conversation
    def __init__(self, conversation: _Optional[_Union[_types_pb2.Conversation, _Mapping]] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ("conversation_id", "page_size", "page_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    page_size: int
    page_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[_types_pb2.Member]
    next_page_token: str
    def __init__(self, members: _Optional[_Iterable[_Union[_types_pb2.Member, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddMembersRequest(_message.Message):
    __slots__ = ("conversation_id", "user_ids", "role")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    role: _types_pb2.Role
    def __init__(self, conversation_id: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ..., role: _Optional[_Union[_types_pb2.Role, str]] = ...) -> None: ...

class AddMembersResponse(_message.Message):
    __slots__ = ("added", "last_seq")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    added: _containers.RepeatedCompositeFieldContainer[_types_pb2.Member]
    last_seq: int
    def __init__(self, added: _Optional[_Iterable[_Union[_types_pb2.Member, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class SetMemberRoleRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id", "role")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    role: _types_pb2.Role
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ..., role: _Optional[_Union[_types_pb2.Role, str]] = ...) -> None: ...

class SetMemberRoleResponse(_message.Message):
    __slots__ = ("member", "seq")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    member: _types_pb2.Member
    seq: int
    def __init__(self, member: _Optional[_Union[_types_pb2.Member, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class LeaveConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class LeaveConversationResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class UpdateMemberSettingsRequest(_message.Message):
    __slots__ = ("conversation_id", "muted")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    muted: bool
    def __init__(self, conversation_id: _Optional[str] = ..., muted: _Optional[bool] = ...) -> None: ...

class UpdateMemberSettingsResponse(_message.Message):
    __slots__ = ("muted",)
    MUTED_FIELD_NUMBER: _ClassVar[int]
    muted: bool
    def __init__(self, muted: _Optional[bool] = ...) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "client_msg_id", "body", "kind", "attachments", "reply_to_seq", "mentions")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    client_msg_id: str
    body: str
    kind: _types_pb2.MessageKind
    attachments: _containers.RepeatedScalarFieldContainer[str]
    reply_to_seq: int
    mentions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation_id: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., body: _Optional[str] = ..., kind: _Optional[_Union[_types_pb2.MessageKind, str]] = ..., attachments: _Optional[_Iterable[str]] = ..., reply_to_seq: _Optional[int] = ..., mentions: _Optional[_Iterable[str]] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("message", "duplicate", "held")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    duplicate: bool
    held: bool
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ..., duplicate: _Optional[bool] = ..., held: _Optional[bool] = ...) -> None: ...

class EditMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "message_seq", "body")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEQ_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    message_seq: int
    body: str
    def __init__(self, conversation_id: _Optional[str] = ..., message_seq: _Optional[int] = ..., body: _Optional[str] = ...) -> None: ...

class EditMessageResponse(_message.Message):
    __slots__ = ("message", "event_seq")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    event_seq: int
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ..., event_seq: _Optional[int] = ...) -> None: ...

class DeleteMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "message_seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    message_seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., message_seq: _Optional[int] = ...) -> None: ...

class DeleteMessageResponse(_message.Message):
    __slots__ = ("message", "event_seq")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    message: _types_pb2.Message
    event_seq: int
    def __init__(self, message: _Optional[_Union[_types_pb2.Message, _Mapping]] = ..., event_seq: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("conversation_id", "before_seq", "after_seq", "limit", "direction")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    before_seq: int
    after_seq: int
    limit: int
    direction: HistoryDirection
    def __init__(self, conversation_id: _Optional[str] = ..., before_seq: _Optional[int] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., direction: _Optional[_Union[HistoryDirection, str]] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("messages", "has_more", "last_seq")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.Message]
    has_more: bool
    last_seq: int
    def __init__(self, messages: _Optional[_Iterable[_Union[_types_pb2.Message, _Mapping]]] = ..., has_more: _Optional[bool] = ..., last_seq: _Optional[int] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("conversation_id", "seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class MarkReadResponse(_message.Message):
    __slots__ = ("last_read_seq", "unread_count")
    LAST_READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    last_read_seq: int
    unread_count: int
    def __init__(self, last_read_seq: _Optional[int] = ..., unread_count: _Optional[int] = ...) -> None: ...

class MarkDeliveredRequest(_message.Message):
    __slots__ = ("conversation_id", "seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class MarkDeliveredResponse(_message.Message):
    __slots__ = ("last_delivered_seq",)
    LAST_DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    last_delivered_seq: int
    def __init__(self, last_delivered_seq: _Optional[int] = ...) -> None: ...

class BlockUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class BlockUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnblockUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class UnblockUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBlockedUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBlockedUsersResponse(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "message_seq", "message_id", "reason", "details")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    message_seq: int
    message_id: str
    reason: _types_pb2.ReportReason
    details: str
    def __init__(self, conversation_id: _Optional[str] = ..., message_seq: _Optional[int] = ..., message_id: _Optional[str] = ..., reason: _Optional[_Union[_types_pb2.ReportReason, str]] = ..., details: _Optional[str] = ...) -> None: ...

class ReportMessageResponse(_message.Message):
    __slots__ = ("report", "duplicate")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    report: _types_pb2.Report
    duplicate: bool
    def __init__(self, report: _Optional[_Union[_types_pb2.Report, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ReportUserRequest(_message.Message):
    __slots__ = ("user_id", "conversation_id", "reason", "details")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    conversation_id: str
    reason: _types_pb2.ReportReason
    details: str
    def __init__(self, user_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., reason: _Optional[_Union[_types_pb2.ReportReason, str]] = ..., details: _Optional[str] = ...) -> None: ...

class ReportUserResponse(_message.Message):
    __slots__ = ("report", "duplicate")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    report: _types_pb2.Report
    duplicate: bool
    def __init__(self, report: _Optional[_Union[_types_pb2.Report, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...
