"""APNs: Apple's HTTP/2 provider API, with token-based (ES256 JWT) authentication.

One HTTP/2 connection is opened lazily and reused for every push; concurrent sends are
multiplexed as streams on it, as Apple asks. The provider token (a JWT signed with the team's
.p8 key) is cached and replaced after 50 minutes: Apple refuses tokens older than an hour and
answers TooManyProviderTokenUpdates to a provider that replaces its token more often than every
20 minutes, so the token is never refreshed per request.

Classification (a failed push never raises):
- 200 → SENT.
- 410 (Unregistered, ExpiredToken), 400 BadDeviceToken / DeviceTokenNotForTopic → GONE.
- 403 ExpiredProviderToken → a new token and one immediate retry; still expired → RETRY.
- other 400, 403, 404, 405, 413 → FAILED with Apple's reason.
- 429, 5xx → RETRY, with Retry-After when Apple sends one.
- timeout → RETRY "timeout"; no connection → RETRY "unreachable"; connection lost mid-request
  → RETRY "connection lost".
"""

from __future__ import annotations

import hashlib
import ssl
import string
from typing import Any

import jwt

from chatmesh_common.clock import Clock, SystemClock

from .base import Outcome, Platform, PushMessage, PushResult, PushTarget
from .common import compact_json, is_transient, load_p256_private_key, retry_later
from .http import H2Client, Reply

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"

MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
# Apple: a token is valid for at most an hour, and must not be replaced more often than every
# 20 minutes. 50 minutes leaves room for clock skew between us and Apple.
TOKEN_REFRESH_S = 50 * 60

# 400 reasons that say the device token itself is dead or belongs to another app: retrying or
# keeping it can never succeed.
_GONE_400_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
_HEX_DIGITS = frozenset(string.hexdigits)


def apns_payload(message: PushMessage) -> dict[str, Any]:
    """The JSON payload for `message`: the `aps` dictionary plus `message.data` at top level.

    A silent push carries only `content-available` in `aps` (Apple: a background notification
    must not have an alert, sound or badge). An alert push with no title and body carries no
    `alert` and no sound, only the badge if any. A data key named "aps" is ignored.
    """
    aps: dict[str, Any] = {}
    if message.silent:
        aps["content-available"] = 1
    else:
        alert = {k: v for k, v in (("title", message.title), ("body", message.body)) if v}
        if alert:
            aps["alert"] = alert
            aps["sound"] = "default"
        if message.badge is not None:
            aps["badge"] = message.badge
        if message.collapse_key:
            aps["thread-id"] = message.collapse_key
    payload: dict[str, Any] = {k: v for k, v in message.data.items() if k != "aps"}
    payload["aps"] = aps
    return payload


def collapse_id(key: str) -> str:
    """`key` as an apns-collapse-id: itself when ASCII and at most 64 bytes, else its SHA-256
    in hex (64 characters), so distinct long keys stay distinct instead of being truncated
    into one."""
    if key.isascii() and len(key) <= MAX_COLLAPSE_ID_BYTES:
        return key
    return hashlib.sha256(key.encode()).hexdigest()


class ApnsProvider:
    """Sends pushes to APNs for one team (`team_id`), signing key (`key_id`, the .p8 PEM) and
    default topic (the app's bundle id; `PushTarget.app_id` overrides it per target).

    `base_url`: PRODUCTION_URL or SANDBOX_URL (development builds of the app get sandbox
    tokens). `verify`: an SSL context, a CA bundle path, or True for the system's CAs.
    `timeout_s` bounds each request attempt from start to answer.
    """

    platform = Platform.APNS

    def __init__(
        self,
        team_id: str,
        key_id: str,
        private_key_pem: str | bytes,
        topic: str,
        base_url: str = PRODUCTION_URL,
        *,
        verify: ssl.SSLContext | str | bool = True,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if not team_id or not key_id or not topic:
            raise ValueError("APNs needs team_id, key_id and topic")
        key = load_p256_private_key(private_key_pem, "APNs signing key (the .p8 file)")
        self._team_id = team_id
        self._key_id = key_id
        self._key = key
        self._topic = topic
        self._timeout_s = timeout_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._token = ""
        self._token_made_at = 0.0  # clock.monotonic(): wall-clock jumps do not age it
        # http1=False: APNs speaks HTTP/2 only, and a single HTTP/2 connection (with ALPN h2)
        # is what httpx then opens and shares between concurrent requests.
        self._client = H2Client(base_url=base_url, http1=False, verify=verify)

    async def close(self) -> None:
        await self._client.close()

    def _provider_token(self) -> str:
        """The current provider token, made anew when missing or 50 minutes old."""
        made_at = self._clock.monotonic()
        if not self._token or made_at - self._token_made_at >= TOKEN_REFRESH_S:
            iat = int(self._clock.now())
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": iat},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._token_made_at = made_at
        return self._token

    def _discard_token(self, token: str) -> None:
        # Only the token that was refused: when many concurrent sends are refused with the same
        # token, the first makes a new one and the others use it, rather than each replacing it
        # again (which Apple would throttle).
        if self._token == token:
            self._token = ""

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        device = target.token
        if not device or not _HEX_DIGITS.issuperset(device):
            # Not a device token at all (it would not even make a valid path).
            return PushResult(Outcome.GONE, reason="BadDeviceToken")
        payload = compact_json(apns_payload(message))
        if len(payload) > MAX_PAYLOAD_BYTES:
            return PushResult(Outcome.FAILED, reason="PayloadTooLarge")
        headers = self._headers(target, message)
        path = f"/3/device/{device}"

        token = self._provider_token()
        result = await self._post(path, headers, payload, token)
        if _expired_token(result):
            self._discard_token(token)
            result = await self._post(path, headers, payload, self._provider_token())
            if _expired_token(result):
                # Refused twice in a row: most likely our clock is off. Not this push's fault.
                return PushResult(Outcome.RETRY, status=result.status, reason=result.reason)
        return result

    def _headers(self, target: PushTarget, message: PushMessage) -> dict[str, str]:
        priority = "10" if message.high_priority and not message.silent else "5"
        expiration = int(self._clock.now()) + message.ttl_s if message.ttl_s > 0 else 0
        headers = {
            "apns-topic": target.app_id or self._topic,
            "apns-push-type": "background" if message.silent else "alert",
            "apns-priority": priority,
            # 0: deliver now or never, APNs stores nothing.
            "apns-expiration": str(expiration),
            "content-type": "application/json",
        }
        if message.collapse_key:
            headers["apns-collapse-id"] = collapse_id(message.collapse_key)
        if message.push_id:
            headers["apns-id"] = message.push_id
        return headers

    async def _post(
        self, path: str, headers: dict[str, str], payload: bytes, token: str
    ) -> PushResult:
        """One attempt, classified."""
        headers = {**headers, "authorization": f"bearer {token}"}
        reply = await self._client.post(path, payload, headers, self._timeout_s)
        if isinstance(reply, PushResult):
            return reply
        status = reply.status
        if status == 200:
            return PushResult(Outcome.SENT, status=status)
        reason = _reason(reply) or f"http {status}"
        if status == 410 or (status == 400 and reason in _GONE_400_REASONS):
            return PushResult(Outcome.GONE, status=status, reason=reason)
        if is_transient(status):
            return retry_later(reply, reason, self._clock.now())
        return PushResult(Outcome.FAILED, status=status, reason=reason)


def _expired_token(result: PushResult) -> bool:
    return result.status == 403 and result.reason == "ExpiredProviderToken"


def _reason(reply: Reply) -> str:
    reason = reply.json_object().get("reason")
    return reason if isinstance(reason, str) else ""
