"""What every push provider offers notify_service's delivery loop: one Protocol, tested per
provider against a local server that speaks that provider's real HTTP API.

A provider never raises for a failed push: it classifies the result so the delivery loop can
retry (with the provider's Retry-After when given), prune a dead target, or give up.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Platform(enum.StrEnum):
    APNS = "apns"
    FCM = "fcm"
    WEBPUSH = "webpush"
    WEBHOOK = "webhook"


class Outcome(enum.Enum):
    # The provider accepted the push.
    SENT = "sent"
    # Try again later (5xx, 429, timeout, connection refused): `retry_after_s` when the provider
    # said how long to wait.
    RETRY = "retry"
    # The target is gone for good (APNs 410 / BadDeviceToken, FCM UNREGISTERED, Web Push 404 or
    # 410): remove it, never retry.
    GONE = "gone"
    # Refused for a reason retrying will not fix (payload too large, bad credentials, ...).
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where one device receives pushes.

    `token`: the APNs device token (hex), the FCM registration token, the Web Push subscription
    endpoint URL, or the webhook URL. `keys`: Web Push `p256dh` and `auth` (base64url), empty
    for the others. `app_id`: the APNs topic (bundle id) or FCM project, when it differs from
    the configured default.
    """

    platform: Platform
    token: str
    keys: Mapping[str, str] = field(default_factory=dict)
    app_id: str = ""


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One notification, already reduced to what the preview privacy level allows.

    `title` / `body` empty means no alert text (id-only and silent pushes). `data` goes to the
    app as custom keys (ids only: conversation_id, seq, message_id, ...). `silent`: a background
    update with no alert (APNs push type background, content-available). `collapse_key`: pushes
    with the same key replace each other on the device (APNs apns-collapse-id, FCM collapse_key /
    tag, Web Push Topic header). `push_id`: the same on every try of one push, after a restart too
    (a UUID); providers pass it where the API has a field for it (APNs apns-id, the webhook's
    Idempotency-Key), so a receiver can drop the one repeat a crash can cause.
    """

    title: str = ""
    body: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
    badge: int | None = None
    collapse_key: str = ""
    silent: bool = False
    # False: low priority (APNs 5, FCM normal, Web Push Urgency low).
    high_priority: bool = True
    ttl_s: int = 86400
    push_id: str = ""


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    # The provider's HTTP status; None when there was no answer (timeout, refused).
    status: int | None = None
    # A short reason for metrics and the dead-letter record: the provider's own reason string
    # ("BadDeviceToken", "UNREGISTERED", "timeout", "http 500", ...). Never message text.
    reason: str = ""
    retry_after_s: float | None = None


class PushProvider(Protocol):
    platform: Platform

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult: ...

    async def close(self) -> None: ...
