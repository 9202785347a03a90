"""Devices and settings as users manage them: request checks, then the store."""

from __future__ import annotations

from collections.abc import Sequence

from chatmesh_common.limits import LIMITS
from chatmesh_common.rpc import check_id, invalid

from .providers.base import Platform, PushTarget
from .providers.webhook import validate_webhook_url
from .store.base import ConversationSetting, DeviceRecord, NotifyStore, Preview, UserSettings

MAX_TOKEN_CHARS = 4096
MAX_SETTINGS_PER_UPDATE = 100
WEBPUSH_KEYS = ("auth", "p256dh")


def check_target(target: PushTarget) -> None:
    if not target.token:
        raise invalid("target.token is required")
    if len(target.token) > MAX_TOKEN_CHARS:
        raise invalid(f"target.token must be at most {MAX_TOKEN_CHARS} characters")
    if target.platform in (Platform.WEBPUSH, Platform.WEBHOOK):
        try:
            validate_webhook_url(target.token)
        except ValueError:
            raise invalid(
                f"target.token of a {target.platform.value} target must be an absolute http(s)"
                " URL without credentials"
            ) from None
    if target.platform is Platform.WEBPUSH and not all(target.keys.get(k) for k in WEBPUSH_KEYS):
        raise invalid("target.keys of a webpush target must hold p256dh and auth")
    if len(target.app_id) > LIMITS.max_id_chars:
        raise invalid(f"target.app_id must be at most {LIMITS.max_id_chars} characters")


class Registry:
    def __init__(self, store: NotifyStore) -> None:
        self._store = store

    async def register(
        self, user_id: str, device_id: str, target: PushTarget, now: float
    ) -> DeviceRecord:
        check_id("device_id", device_id)
        check_target(target)
        return await self._store.register_device(user_id, device_id, target, now)

    async def unregister(self, user_id: str, device_id: str) -> bool:
        check_id("device_id", device_id)
        return await self._store.unregister_device(user_id, device_id)

    async def devices(self, user_id: str) -> list[DeviceRecord]:
        return await self._store.list_devices(user_id)

    async def settings(self, user_id: str) -> UserSettings:
        return await self._store.get_settings(user_id)

    async def update_settings(
        self, user_id: str, preview: Preview | None, conversations: Sequence[ConversationSetting]
    ) -> UserSettings:
        if len(conversations) > MAX_SETTINGS_PER_UPDATE:
            raise invalid(f"conversations must hold at most {MAX_SETTINGS_PER_UPDATE} settings")
        for c in conversations:
            check_id("conversations.conversation_id", c.conversation_id)
        return await self._store.update_settings(user_id, preview, conversations)
