"""Signed webhooks: pushes POSTed as JSON to an operator's or integrator's own gateway.

The request
-----------
`POST <target URL>` with `Content-Type: application/json` and a body like::

    {"type": "notification", "title": "Alice", "body": "hi", "data": {"conversation_id": "c1"},
     "badge": 3, "collapse_key": "c1", "silent": false, "sent_at": 1700000000}

Every key is always present (`badge` may be null; `sent_at` is Unix seconds).

`Idempotency-Key: <uuid>` names the push: every try of one push carries the same key, also after
a restart of notify_service. A receiver that keeps the keys it accepted lately (a day is plenty)
and answers 2xx to a key it has seen, doing nothing, never shows a push twice, even for the one
repeat a crash can cause (notify killed after the receiver accepted, before it recorded that).

The signature
-------------
`Chatmesh-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC key is the shared
secret (UTF-8) and the signed bytes are the timestamp, a dot and the raw body, exactly as
received::

    expected = hmac.new(secret, f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()

A receiver recomputes it over the raw bytes (before parsing the JSON), compares in constant
time, and refuses a timestamp more than a few minutes from its own clock, so a captured request
cannot be replayed later. `verify_signature` here does all of that. A header may carry several
`v1=` values (during a secret rotation); one match is enough.

Outcomes: 2xx SENT; 410 GONE (the receiver says the target is no more); 429 and 5xx RETRY with
Retry-After; other statuses FAILED (redirects are not followed); timeouts and connection errors
RETRY ("timeout", "unreachable", "connection lost"); a URL that is not an absolute http(s) URL
without credentials FAILED "InvalidURL".
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import urlsplit

from chatmesh_common.clock import Clock, SystemClock

from .base import Outcome, Platform, PushMessage, PushResult, PushTarget
from .common import compact_json, is_transient, retry_later
from .http import H1Client, HttpClient

SIGNATURE_HEADER = "Chatmesh-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_S = 300


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The `Chatmesh-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    header_value: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when `header_value` signs `body` with `secret` and its timestamp is within
    `tolerance_s` of `now` (either way). Malformed headers are False, never an exception."""
    if not header_value:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if not (value.isascii() and value.isdigit()) or timestamp is not None:
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    # Compare every candidate, so the time taken does not say which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.strip().lower().encode())
    return matched


def notification_body(message: PushMessage, sent_at: int) -> bytes:
    payload = {
        "type": "notification",
        "title": message.title,
        "body": message.body,
        "data": dict(message.data),
        "badge": message.badge,
        "collapse_key": message.collapse_key,
        "silent": message.silent,
        "sent_at": sent_at,
    }
    return compact_json(payload)


# Cached (a bad URL raises every time, uncached): every push to a target checks its URL again,
# and parsing it cost more than signing the body.
@functools.lru_cache(maxsize=8192)
def validate_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook URL: must be an absolute http(s) URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook URL: credentials in the URL are not allowed")
    return url


class WebhookProvider:
    """POSTs signed JSON to each target's URL. `secret`: the HMAC key receivers share."""

    platform = Platform.WEBHOOK

    def __init__(
        self,
        secret: str | bytes,
        *,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        client: HttpClient | None = None,
    ) -> None:
        if not secret:
            raise ValueError("webhook secret: must not be empty")
        self._secret = _key(secret)
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._own_client = client is None
        # HTTP/1.1: every receiver speaks it, and its client is the cheap one per request.
        self._client = client or H1Client()

    def build_request(self, message: PushMessage) -> tuple[dict[str, str], bytes]:
        sent_at = int(self._clock.now())
        body = notification_body(message, sent_at)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, sent_at),
        }
        if message.push_id:
            headers[IDEMPOTENCY_HEADER] = message.push_id
        return headers, body

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        try:
            url = validate_webhook_url(target.token)
        except ValueError:
            return PushResult(Outcome.FAILED, reason="InvalidURL")
        headers, body = self.build_request(message)
        reply = await self._client.post(url, body, headers, self._timeout_s)
        if isinstance(reply, PushResult):
            return reply
        status = reply.status
        if 200 <= status < 300:
            return PushResult(Outcome.SENT, status)
        if status == 410:
            return PushResult(Outcome.GONE, status, "http 410")
        if is_transient(status):
            return retry_later(reply, f"http {status}", self._clock.now())
        return PushResult(Outcome.FAILED, status, f"http {status}")

    async def close(self) -> None:
        if self._own_client:
            await self._client.close()
