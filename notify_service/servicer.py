"""The gRPC servicer of notify_service: protos in and out, refusals through the shared wrappers.

Device and settings calls act as the token's user (the token's device for RegisterDevice), so
the WebSocket edge forwards them with the socket's token. Dead-letter calls need a service token
with scope `notify.admin` (chatmesh_common.credentials), e.g. one minted for an operator."""

from __future__ import annotations

from chatmesh.notify.v1 import notify_service_pb2 as pb
from chatmesh.notify.v1 import notify_service_pb2_grpc

from chatmesh_common.auth import Identity, ServiceIdentity
from chatmesh_common.clock import Clock
from chatmesh_common.rpc import Authenticator, RpcServicer, invalid, not_found, timestamp, unary

from .providers.base import Platform, PushTarget
from .registry import Registry
from .store.base import (
    ConversationSetting,
    DeadLetterRecord,
    DeviceRecord,
    Level,
    NotifyStore,
    Preview,
    UserSettings,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotifyService"].full_name
DEFAULT_PAGE = 50
MAX_PAGE = 200

_PLATFORMS = {
    pb.PLATFORM_APNS: Platform.APNS,
    pb.PLATFORM_FCM: Platform.FCM,
    pb.PLATFORM_WEBPUSH: Platform.WEBPUSH,
    pb.PLATFORM_WEBHOOK: Platform.WEBHOOK,
}
_PLATFORM_PB = {v: k for k, v in _PLATFORMS.items()}


def _target(message: pb.PushTarget) -> PushTarget:
    platform = _PLATFORMS.get(message.platform)
    if platform is None:
        raise invalid("target.platform is required")
    return PushTarget(platform, message.token, dict(message.keys), message.app_id)


def device_pb(record: DeviceRecord) -> pb.Device:
    target = record.target
    return pb.Device(
        device_id=record.device_id,
        target=pb.PushTarget(
            platform=_PLATFORM_PB[target.platform],
            token=target.token,
            keys=dict(target.keys),
            app_id=target.app_id,
        ),
        registered_at=timestamp(record.registered_at),
    )


def _setting(message: pb.ConversationSettings) -> ConversationSetting:
    if message.level not in Level._value2member_map_:
        raise invalid("conversations.level is not a NotifyLevel")
    muted_until = (
        message.muted_until.ToMilliseconds() / 1000 if message.HasField("muted_until") else None
    )
    return ConversationSetting(
        message.conversation_id, Level(message.level), muted_until, message.muted_forever
    )


def _setting_pb(setting: ConversationSetting) -> pb.ConversationSettings:
    out = pb.ConversationSettings(
        conversation_id=setting.conversation_id,
        level=int(setting.level),  # type: ignore[arg-type]
        muted_forever=setting.muted_forever,
    )
    if setting.muted_until is not None:
        out.muted_until.CopyFrom(timestamp(setting.muted_until))
    return out


def _settings_pb(settings: UserSettings) -> tuple[int, list[pb.ConversationSettings]]:
    return int(settings.preview), [_setting_pb(c) for c in settings.conversations]


def dead_letter_pb(record: DeadLetterRecord) -> pb.DeadLetter:
    return pb.DeadLetter(
        dead_letter_id=str(record.dead_letter_id),
        user_id=record.user_id,
        device_id=record.device_id,
        platform=_PLATFORM_PB[record.platform],
        conversation_id=record.conversation_id,
        seq=record.seq,
        attempts=record.attempts,
        last_error=record.last_error,
        failed_at=timestamp(record.failed_at),
        pending=record.pending,
    )


def _id(field: str, value: str) -> int:
    if not value.isdigit():
        raise invalid(f"{field} is not a dead letter id")
    return int(value)


class NotifyServicer(RpcServicer, notify_service_pb2_grpc.NotifyServiceServicer):
    SERVICE = SERVICE_NAME

    def __init__(self, store: NotifyStore, authenticator: Authenticator, clock: Clock) -> None:
        super().__init__(authenticator)
        self.store = store
        self.registry = Registry(store)
        self.clock = clock

    @unary
    async def RegisterDevice(
        self, request: pb.RegisterDeviceRequest, who: Identity
    ) -> pb.RegisterDeviceResponse:
        record = await self.registry.register(
            who.user_id, who.device_id, _target(request.target), self.clock.now()
        )
        return pb.RegisterDeviceResponse(device=device_pb(record))

    @unary
    async def UnregisterDevice(
        self, request: pb.UnregisterDeviceRequest, who: Identity
    ) -> pb.UnregisterDeviceResponse:
        removed = await self.registry.unregister(who.user_id, request.device_id or who.device_id)
        return pb.UnregisterDeviceResponse(removed=removed)

    @unary
    async def ListDevices(
        self, request: pb.ListDevicesRequest, who: Identity
    ) -> pb.ListDevicesResponse:
        devices = await self.registry.devices(who.user_id)
        return pb.ListDevicesResponse(devices=[device_pb(d) for d in devices])

    @unary
    async def GetNotificationSettings(
        self, request: pb.GetNotificationSettingsRequest, who: Identity
    ) -> pb.GetNotificationSettingsResponse:
        preview, conversations = _settings_pb(await self.registry.settings(who.user_id))
        return pb.GetNotificationSettingsResponse(preview=preview, conversations=conversations)  # type: ignore[arg-type]

    @unary
    async def UpdateNotificationSettings(
        self, request: pb.UpdateNotificationSettingsRequest, who: Identity
    ) -> pb.UpdateNotificationSettingsResponse:
        if request.preview and request.preview not in Preview._value2member_map_:
            raise invalid("preview is not a PreviewLevel")
        preview = Preview(request.preview) if request.preview else None
        settings = await self.registry.update_settings(
            who.user_id, preview, [_setting(c) for c in request.conversations]
        )
        level, conversations = _settings_pb(settings)
        return pb.UpdateNotificationSettingsResponse(preview=level, conversations=conversations)  # type: ignore[arg-type]

    @unary
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, _caller: ServiceIdentity
    ) -> pb.ListDeadLettersResponse:
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise invalid(f"page_size must be between 1 and {MAX_PAGE}")
        before = _id("page_token", request.page_token) if request.page_token else None
        records = await self.store.list_dead_letters(request.user_id or None, before, size + 1)
        page = records[:size]
        token = str(page[-1].dead_letter_id) if len(records) > size else ""
        return pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_pb(r) for r in page], next_page_token=token
        )

    @unary
    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, _caller: ServiceIdentity
    ) -> pb.ReplayDeadLetterResponse:
        record = await self.store.replay_dead_letter(
            _id("dead_letter_id", request.dead_letter_id), self.clock.now()
        )
        if record is None:
            raise not_found(f"no dead letter {request.dead_letter_id!r}")
        return pb.ReplayDeadLetterResponse(dead_letter=dead_letter_pb(record))
