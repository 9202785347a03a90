import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Platform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLATFORM_UNSPECIFIED: _ClassVar[Platform]
    PLATFORM_APNS: _ClassVar[Platform]
    PLATFORM_FCM: _ClassVar[Platform]
    PLATFORM_WEBPUSH: _ClassVar[Platform]
    PLATFORM_WEBHOOK: _ClassVar[Platform]

class PreviewLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREVIEW_LEVEL_UNSPECIFIED: _ClassVar[PreviewLevel]
    PREVIEW_LEVEL_FULL: _ClassVar[PreviewLevel]
    PREVIEW_LEVEL_SENDER_ONLY: _ClassVar[PreviewLevel]
    PREVIEW_LEVEL_GENERIC: _ClassVar[PreviewLevel]
    PREVIEW_LEVEL_ID_ONLY: _ClassVar[PreviewLevel]

class NotifyLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFY_LEVEL_UNSPECIFIED: _ClassVar[NotifyLevel]
    NOTIFY_LEVEL_ALL: _ClassVar[NotifyLevel]
    NOTIFY_LEVEL_MENTIONS: _ClassVar[NotifyLevel]
    NOTIFY_LEVEL_NONE: _ClassVar[NotifyLevel]
PLATFORM_UNSPECIFIED: Platform
PLATFORM_APNS: Platform
PLATFORM_FCM: Platform
PLATFORM_WEBPUSH: Platform
PLATFORM_WEBHOOK: Platform
PREVIEW_LEVEL_UNSPECIFIED: PreviewLevel
PREVIEW_LEVEL_FULL: PreviewLevel
PREVIEW_LEVEL_SENDER_ONLY: PreviewLevel
PREVIEW_LEVEL_GENERIC: PreviewLevel
PREVIEW_LEVEL_ID_ONLY: PreviewLevel
NOTIFY_LEVEL_UNSPECIFIED: NotifyLevel
NOTIFY_LEVEL_ALL: NotifyLevel
NOTIFY_LEVEL_MENTIONS: NotifyLevel
NOTIFY_LEVEL_NONE: NotifyLevel

class PushTarget(_message.Message):
    __slots__ = ("platform", "token", "keys", "app_id")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    platform: Platform
    token: str
    keys: _containers.ScalarMap[str, str]
    app_id: str
    def __init__(self, platform: _Optional[_Union[Platform, str]] = ..., token: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., app_id: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "target", "registered_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    target: PushTarget
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., target: _Optional[_Union[PushTarget, _Mapping]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: PushTarget
    def __init__(self, target: _Optional[_Union[PushTarget, _Mapping]] = ...) -> None: ...

class RegisterDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class UnregisterDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class UnregisterDeviceResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class ConversationSettings(_message.Message):
    __slots__ = ("conversation_id", "level", "muted_until", "muted_forever")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MUTED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    MUTED_FOREVER_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    level: NotifyLevel
    muted_until: _timestamp_pb2.Timestamp
    muted_forever: bool
    def __init__(self, conversation_id: _Optional[str] = ..., level: _Optional[_Union[NotifyLevel, str]] = ..., muted_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., muted_forever: _Optional[bool] = ...) -> None: ...

class GetNotificationSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNotificationSettingsResponse(_message.Message):
    __slots__ = ("preview", "conversations")
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    preview: PreviewLevel
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSettings]
    def __init__(self, preview: _Optional[_Union[PreviewLevel, str]] = ..., conversations: _Optional[_Iterable[_Union[ConversationSettings, _Mapping]]] = ...) -> None: ...

class UpdateNotificationSettingsRequest(_message.Message):
    __slots__ = ("preview", "conversations")
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    preview: PreviewLevel
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSettings]
    def __init__(self, preview: _Optional[_Union[PreviewLevel, str]] = ..., conversations: _Optional[_Iterable[_Union[ConversationSettings, _Mapping]]] = ...) -> None: ...

class UpdateNotificationSettingsResponse(_message.Message):
    __slots__ = ("preview", "conversations")
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    preview: PreviewLevel
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSettings]
    def __init__(self, preview: _Optional[_Union[PreviewLevel, str]] = ..., conversations: _Optional[_Iterable[_Union[ConversationSettings, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("dead_letter_id", "user_id", "device_id", "platform", "conversation_id", "seq", "attempts", "last_error", "failed_at", "pending")
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    dead_letter_id: str
    user_id: str
    device_id: str
    platform: Platform
    conversation_id: str
    seq: int
    attempts: int
    last_error: str
    failed_at: _timestamp_pb2.Timestamp
    pending: bool
    def __init__(self, dead_letter_id: _Optional[str] = ..., user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., platform: _Optional[_Union[Platform, str]] = ..., conversation_id: _Optional[str] = ..., seq: _Optional[int] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending: _Optional[bool] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("user_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayDeadLetterRequest(_message.Message):
    __slots__ = ("dead_letter_id",)
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    dead_letter_id: str
    def __init__(self, dead_letter_id: _Optional[str] = ...) -> None: ...

class ReplayDeadLetterResponse(_message.Message):
    __slots__ = ("dead_letter",)
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    dead_letter: DeadLetter
    def __init__(self, dead_letter: _Optional[_Union[DeadLetter, _Mapping]] = ...) -> None: ...
