from chatmesh.chat.v1 import chat_service_pb2 as _chat_service_pb2
from chatmesh.chat.v1 import types_pb2 as _types_pb2
from chatmesh.events.v1 import events_pb2 as _events_pb2
from chatmesh.media.v1 import media_service_pb2 as _media_service_pb2
from chatmesh.notify.v1 import notify_service_pb2 as _notify_service_pb2
from chatmesh.presence.v1 import presence_service_pb2 as _presence_service_pb2
from chatmesh.search.v1 import search_service_pb2 as _search_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_CANCELLED: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_FAILED_PRECONDITION: _ClassVar[ErrorCode]
    ERROR_CODE_ABORTED: _ClassVar[ErrorCode]
    ERROR_CODE_OUT_OF_RANGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNIMPLEMENTED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_DATA_LOSS: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_UNKNOWN: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_ALREADY_EXISTS: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_FAILED_PRECONDITION: ErrorCode
ERROR_CODE_ABORTED: ErrorCode
ERROR_CODE_OUT_OF_RANGE: ErrorCode
ERROR_CODE_UNIMPLEMENTED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_DATA_LOSS: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode

class ClientFrame(_message.Message):
    __slots__ = ("request_id", "auth", "ping", "resume", "send_message", "edit_message", "delete_message", "get_history", "mark_read", "mark_delivered", "create_conversation", "get_conversation", "list_conversations", "update_conversation", "list_members", "add_members", "remove_member", "set_member_role", "leave_conversation", "update_member_settings", "block_user", "unblock_user", "list_blocked_users", "presence_subscribe", "presence_unsubscribe", "set_status", "typing", "create_upload", "complete_upload", "get_media", "get_download_url", "register_device", "unregister_device", "list_devices", "get_notification_settings", "update_notification_settings", "search", "report_message", "report_user")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    SEND_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EDIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DELETE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GET_HISTORY_FIELD_NUMBER: _ClassVar[int]
    MARK_READ_FIELD_NUMBER: _ClassVar[int]
    MARK_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CREATE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    GET_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LIST_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LIST_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ADD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MEMBER_FIELD_NUMBER: _ClassVar[int]
    SET_MEMBER_ROLE_FIELD_NUMBER: _ClassVar[int]
    LEAVE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MEMBER_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_USER_FIELD_NUMBER: _ClassVar[int]
    UNBLOCK_USER_FIELD_NUMBER: _ClassVar[int]
    LIST_BLOCKED_USERS_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    SET_STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    CREATE_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    GET_MEDIA_FIELD_NUMBER: _ClassVar[int]
    GET_DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    REGISTER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIST_DEVICES_FIELD_NUMBER: _ClassVar[int]
    GET_NOTIFICATION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NOTIFICATION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    REPORT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPORT_USER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    auth: AuthRequest
    ping: PingRequest
    resume: ResumeRequest
    send_message: _chat_service_pb2.SendMessageRequest
    edit_message: _chat_service_pb2.EditMessageRequest
    delete_message: _chat_service_pb2.DeleteMessageRequest
    get_history: _chat_service_pb2.GetHistoryRequest
    mark_read: _chat_service_pb2.MarkReadRequest
    mark_delivered: _chat_service_pb2.MarkDeliveredRequest
    create_conversation: _chat_service_pb2.CreateConversationRequest
    get_conversation: _chat_service_pb2.GetConversationRequest
    list_conversations: _chat_service_pb2.ListConversationsRequest
    update_conversation: _chat_service_pb2.UpdateConversationRequest
    list_members: _chat_service_pb2.ListMembersRequest
    add_members: _chat_service_pb2.AddMembersRequest
    remove_member: _chat_service_pb2.RemoveMemberRequest
    set_member_role: _chat_service_pb2.SetMemberRoleRequest
    leave_conversation: _chat_service_pb2.LeaveConversationRequest
    update_member_settings: _chat_service_pb2.UpdateMemberSettingsRequest
    block_user: _chat_service_pb2.BlockUserRequest
    unblock_user: _chat_service_pb2.UnblockUserRequest
    list_blocked_users: _chat_service_pb2.ListBlockedUsersRequest
    presence_subscribe: PresenceSubscribeRequest
    presence_unsubscribe: PresenceUnsubscribeRequest
    set_status: _presence_service_pb2.SetStatusRequest
    typing: _presence_service_pb2.SendTypingRequest
    create_upload: _media_service_pb2.CreateUploadRequest
    complete_upload: _media_service_pb2.CompleteUploadRequest
    get_media: _media_service_pb2.GetMediaRequest
    get_download_url: _media_service_pb2.GetDownloadUrlRequest
    register_device: _notify_service_pb2.RegisterDeviceRequest
    unregister_device: _notify_service_pb2.UnregisterDeviceRequest
    list_devices: _notify_service_pb2.ListDevicesRequest
    get_notification_settings: _notify_service_pb2.GetNotificationSettingsRequest
    update_notification_settings: _notify_service_pb2.UpdateNotificationSettingsRequest
    search: _search_service_pb2.SearchRequest
    report_message: _chat_service_pb2.ReportMessageRequest
    report_user: _chat_service_pb2.ReportUserRequest
    def __init__(self, request_id: _Optional[str] = ..., auth: _Optional[_Union[AuthRequest, _Mapping]] = ..., ping: _Optional[_Union[PingRequest, _Mapping]] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ..., send_message: _Optional[_Union[_chat_service_pb2.SendMessageRequest, _Mapping]] = ..., edit_message: _Optional[_Union[_chat_service_pb2.EditMessageRequest, _Mapping]] = ..., delete_message: _Optional[_Union[_chat_service_pb2.DeleteMessageRequest, _Mapping]] = ..., get_history: _Optional[_Union[_chat_service_pb2.GetHistoryRequest, _Mapping]] = ..., mark_read: _Optional[_Union[_chat_service_pb2.MarkReadRequest, _Mapping]] = ..., mark_delivered: _Optional[_Union[_chat_service_pb2.MarkDeliveredRequest, _Mapping]] = ..., create_conversation: _Optional[_Union[_chat_service_pb2.CreateConversationRequest, _Mapping]] = ..., get_conversation: _Optional[_Union[_chat_service_pb2.GetConversationRequest, _Mapping]] = ..., list_conversations: _Optional[_Union[_chat_service_pb2.ListConversationsRequest, _Mapping]] = ..., update_conversation: _Optional[_Union[_chat_service_pb2.UpdateConversationRequest, _Mapping]] = ..., list_members: _Optional[_Union[_chat_service_pb2.ListMembersRequest, _Mapping]] = ..., add_members: _Optional[_Union[_chat_service_pb2.AddMembersRequest, _Mapping]] = ..., remove_member: _Optional[_Union[_chat_service_pb2.RemoveMemberRequest, _Mapping]] = ..., set_member_role: _Optional[_Union[_chat_service_pb2.SetMemberRoleRequest, _Mapping]] = ..., leave_conversation: _Optional[_Union[_chat_service_pb2.LeaveConversationRequest, _Mapping]] = ..., update_member_settings: _Optional[_Union[_chat_service_pb2.UpdateMemberSettingsRequest, _Mapping]] = ..., block_user: _Optional[_Union[_chat_service_pb2.BlockUserRequest, _Mapping]] = ..., unblock_user: _Optional[_Union[_chat_service_pb2.UnblockUserRequest, _Mapping]] = ..., list_blocked_users: _Optional[_Union[_chat_service_pb2.ListBlockedUsersRequest, _Mapping]] = ..., presence_subscribe: _Optional[_Union[PresenceSubscribeRequest, _Mapping]] = ..., presence_unsubscribe: _Optional[_Union[PresenceUnsubscribeRequest, _Mapping]] = ..., set_status: _Optional[_Union[_presence_service_pb2.SetStatusRequest, _Mapping]] = ..., typing: _Optional[_Union[_presence_service_pb2.SendTypingRequest, _Mapping]] = ..., create_upload: _Optional[_Union[_media_service_pb2.CreateUploadRequest, _Mapping]] = ..., complete_upload: _Optional[_Union[_media_service_pb2.CompleteUploadRequest, _Mapping]] = ..., get_media: _Optional[_Union[_media_service_pb2.GetMediaRequest, _Mapping]] = ..., get_download_url: _Optional[_Union[_media_service_pb2.GetDownloadUrlRequest, _Mapping]] = ..., register_device: _Optional[_Union[_notify_service_pb2.RegisterDeviceRequest, _Mapping]] = ..., unregister_device: _Optional[_Union[_notify_service_pb2.UnregisterDeviceRequest, _Mapping]] = ..., list_devices: _Optional[_Union[_notify_service_pb2.ListDevicesRequest, _Mapping]] = ..., get_notification_settings: _Optional[_Union[_notify_service_pb2.GetNotificationSettingsRequest, _Mapping]] = ..., update_notification_settings: _Optional[_Union[_notify_service_pb2.UpdateNotificationSettingsRequest, _Mapping]] = ..., search: _Optional[_Union[_search_service_pb2.SearchRequest, _Mapping]] = ..., report_message: _Optional[_Union[_chat_service_pb2.ReportMessageRequest, _Mapping]] = ..., report_user: _Optional[_Union[_chat_service_pb2.ReportUserRequest, _Mapping]] = ...) -> None: ...

class ServerFrame(_message.Message):
    __slots__ = ("request_id", "error", "ready", "pong", "resumed", "event", "send_message", "edit_message", "delete_message", "get_history", "mark_read", "mark_delivered", "create_conversation", "get_conversation", "list_conversations", "update_conversation", "list_members", "add_members", "remove_member", "set_member_role", "leave_conversation", "update_member_settings", "block_user", "unblock_user", "list_blocked_users", "presence_subscribe", "presence_unsubscribe", "set_status", "typing", "presence_event", "typing_event", "create_upload", "complete_upload", "get_media", "get_download_url", "register_device", "unregister_device", "list_devices", "get_notification_settings", "update_notification_settings", "search", "report_message", "report_user")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEND_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EDIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DELETE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GET_HISTORY_FIELD_NUMBER: _ClassVar[int]
    MARK_READ_FIELD_NUMBER: _ClassVar[int]
    MARK_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CREATE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    GET_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LIST_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LIST_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ADD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MEMBER_FIELD_NUMBER: _ClassVar[int]
    SET_MEMBER_ROLE_FIELD_NUMBER: _ClassVar[int]
    LEAVE_CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MEMBER_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_USER_FIELD_NUMBER: _ClassVar[int]
    UNBLOCK_USER_FIELD_NUMBER: _ClassVar[int]
    LIST_BLOCKED_USERS_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    SET_STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_EVENT_FIELD_NUMBER: _ClassVar[int]
    TYPING_EVENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    GET_MEDIA_FIELD_NUMBER: _ClassVar[int]
    GET_DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    REGISTER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIST_DEVICES_FIELD_NUMBER: _ClassVar[int]
    GET_NOTIFICATION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NOTIFICATION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    REPORT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPORT_USER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    error: Error
    ready: Ready
    pong: PingResponse
    resumed: ResumeResponse
    event: _events_pb2.ConversationEvent
    send_message: _chat_service_pb2.SendMessageResponse
    edit_message: _chat_service_pb2.EditMessageResponse
    delete_message: _chat_service_pb2.DeleteMessageResponse
    get_history: _chat_service_pb2.GetHistoryResponse
    mark_read: _chat_service_pb2.MarkReadResponse
    mark_delivered: _chat_service_pb2.MarkDeliveredResponse
    create_conversation: _chat_service_pb2.CreateConversationResponse
    get_conversation: _chat_service_pb2.GetConversationResponse
    list_conversations: _chat_service_pb2.ListConversationsResponse
    update_conversation: _chat_service_pb2.UpdateConversationResponse
    list_members: _chat_service_pb2.ListMembersResponse
    add_members: _chat_service_pb2.AddMembersResponse
    remove_member: _chat_service_pb2.RemoveMemberResponse
    set_member_role: _chat_service_pb2.SetMemberRoleResponse
    leave_conversation: _chat_service_pb2.LeaveConversationResponse
    update_member_settings: _chat_service_pb2.UpdateMemberSettingsResponse
    block_user: _chat_service_pb2.BlockUserResponse
    unblock_user: _chat_service_pb2.UnblockUserResponse
    list_blocked_users: _chat_service_pb2.ListBlockedUsersResponse
    presence_subscribe: PresenceSubscribeResponse
    presence_unsubscribe: PresenceUnsubscribeResponse
    set_status: _presence_service_pb2.SetStatusResponse
    typing: _presence_service_pb2.SendTypingResponse
    presence_event: _presence_service_pb2.UserPresence
    typing_event: _presence_service_pb2.TypingEvent
    create_upload: _media_service_pb2.CreateUploadResponse
    complete_upload: _media_service_pb2.CompleteUploadResponse
    get_media: _media_service_pb2.GetMediaResponse
    get_download_url: _media_service_pb2.GetDownloadUrlResponse
    register_device: _notify_service_pb2.RegisterDeviceResponse
    unregister_device: _notify_service_pb2.UnregisterDeviceResponse
    list_devices: _notify_service_pb2.ListDevicesResponse
    get_notification_settings: _notify_service_pb2.GetNotificationSettingsResponse
    update_notification_settings: _notify_service_pb2.UpdateNotificationSettingsResponse
    search: _search_service_pb2.SearchResponse
    report_message: _chat_service_pb2.ReportMessageResponse
    report_user: _chat_service_pb2.ReportUserResponse
    def __init__(self, request_id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., ready: _Optional[_Union[Ready, _Mapping]] = ..., pong: _Optional[_Union[PingResponse, _Mapping]] = ..., resumed: _Optional[_Union[ResumeResponse, _Mapping]] = ..., event: _Optional[_Union[_events_pb2.ConversationEvent, _Mapping]] = ..., send_message: _Optional[_Union[_chat_service_pb2.SendMessageResponse, _Mapping]] = ..., edit_message: _Optional[_Union[_chat_service_pb2.EditMessageResponse, _Mapping]] = ..., delete_message: _Optional[_Union[_chat_service_pb2.DeleteMessageResponse, _Mapping]] = ..., get_history: _Optional[_Union[_chat_service_pb2.GetHistoryResponse, _Mapping]] = ..., mark_read: _Optional[_Union[_chat_service_pb2.MarkReadResponse, _Mapping]] = ..., mark_delivered: _Optional[_Union[_chat_service_pb2.MarkDeliveredResponse, _Mapping]] = ..., create_conversation: _Optional[_Union[_chat_service_pb2.CreateConversationResponse, _Mapping]] = ..., get_conversation: _Optional[_Union[_chat_service_pb2.GetConversationResponse, _Mapping]] = ..., list_conversations: _Optional[_Union[_chat_service_pb2.ListConversationsResponse, _Mapping]] = ..., update_conversation: _Optional[_Union[_chat_service_pb2.UpdateConversationResponse, _Mapping]] = ..., list_members: _Optional[_Union[_chat_service_pb2.ListMembersResponse, _Mapping]] = ..., add_members: _Optional[_Union[_chat_service_pb2.AddMembersResponse, _Mapping]] = ..., remove_member: _Optional[_Union[_chat_service_pb2.RemoveMemberResponse, _Mapping]] = ..., set_member_role: _Optional[_Union[_chat_service_pb2.SetMemberRoleResponse, _Mapping]] = ..., leave_conversation: _Optional[_Union[_chat_service_pb2.LeaveConversationResponse, _Mapping]] = ..., update_member_settings: _Optional[_Union[_chat_service_pb2.UpdateMemberSettingsResponse, _Mapping]] = ..., block_user: _Optional[_Union[_chat_service_pb2.BlockUserResponse, _Mapping]] = ..., unblock_user: _Optional[_Union[_chat_service_pb2.UnblockUserResponse, _Mapping]] = ..., list_blocked_users: _Optional[_Union[_chat_service_pb2.ListBlockedUsersResponse, _Mapping]] = ..., presence_subscribe: _Optional[_Union[PresenceSubscribeResponse, _Mapping]] = ..., presence_unsubscribe: _Optional[_Union[PresenceUnsubscribeResponse, _Mapping]] = ..., set_status: _Optional[_Union[_presence_service_pb2.SetStatusResponse, _Mapping]] = ..., typing: _Optional[_Union[_presence_service_pb2.SendTypingResponse, _Mapping]] = ..., presence_event: _Optional[_Union[_presence_service_pb2.UserPresence, _Mapping]] = ..., typing_event: _Optional[_Union[_presence_service_pb2.TypingEvent, _Mapping]] = ..., create_upload: _Optional[_Union[_media_service_pb2.CreateUploadResponse, _Mapping]] = ..., complete_upload: _Optional[_Union[_media_service_pb2.CompleteUploadResponse, _Mapping]] = ..., get_media: _Optional[_Union[_media_service_pb2.GetMediaResponse, _Mapping]] = ..., get_download_url: _Optional[_Union[_media_service_pb2.GetDownloadUrlResponse, _Mapping]] = ..., register_device: _Optional[_Union[_notify_service_pb2.RegisterDeviceResponse, _Mapping]] = ..., unregister_device: _Optional[_Union[_notify_service_pb2.UnregisterDeviceResponse, _Mapping]] = ..., list_devices: _Optional[_Union[_notify_service_pb2.ListDevicesResponse, _Mapping]] = ..., get_notification_settings: _Optional[_Union[_notify_service_pb2.GetNotificationSettingsResponse, _Mapping]] = ..., update_notification_settings: _Optional[_Union[_notify_service_pb2.UpdateNotificationSettingsResponse, _Mapping]] = ..., search: _Optional[_Union[_search_service_pb2.SearchResponse, _Mapping]] = ..., report_message: _Optional[_Union[_chat_service_pb2.ReportMessageResponse, _Mapping]] = ..., report_user: _Optional[_Union[_chat_service_pb2.ReportUserResponse, _Mapping]] = ...) -> None: ...

class AuthRequest(_message.Message):
    __slots__ = ("token", "resume")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    token: str
    resume: _containers.RepeatedCompositeFieldContainer[_types_pb2.ConversationCursor]
    def __init__(self, token: _Optional[str] = ..., resume: _Optional[_Iterable[_Union[_types_pb2.ConversationCursor, _Mapping]]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("cursors",)
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    cursors: _containers.RepeatedCompositeFieldContainer[_types_pb2.ConversationCursor]
    def __init__(self, cursors: _Optional[_Iterable[_Union[_types_pb2.ConversationCursor, _Mapping]]] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("revoked_conversation_ids",)
    REVOKED_CONVERSATION_IDS_FIELD_NUMBER: _ClassVar[int]
    revoked_conversation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revoked_conversation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PresenceSubscribeRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PresenceSubscribeResponse(_message.Message):
    __slots__ = ("presences",)
    PRESENCES_FIELD_NUMBER: _ClassVar[int]
    presences: _containers.RepeatedCompositeFieldContainer[_presence_service_pb2.UserPresence]
    def __init__(self, presences: _Optional[_Iterable[_Union[_presence_service_pb2.UserPresence, _Mapping]]] = ...) -> None: ...

class PresenceUnsubscribeRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PresenceUnsubscribeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Ready(_message.Message):
    __slots__ = ("user_id", "device_id", "heartbeat_interval_ms", "max_frame_bytes")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    heartbeat_interval_ms: int
    max_frame_bytes: int
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., max_frame_bytes: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "retry_after_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    retry_after_ms: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...
