"""Web Push (RFC 8030) to browser push services, with encrypted payloads (RFC 8291, aes128gcm)
and VAPID identification (RFC 8292).

What the service worker receives (`event.data.json()`): a compact JSON object with only the set
keys of `{"title", "body", "data", "badge", "silent", "tag"}`; `tag` is the collapse key, for
`showNotification(title, {tag})`. The encrypted body must fit 4096 bytes (the limit every push
service keeps), which leaves 3993 bytes of JSON.

Request headers: `TTL` (seconds the service may hold the push), `Urgency` (`high`, `normal`;
`low` for silent pushes), `Topic` when the message has a collapse key (the service replaces an
undelivered push with the same topic), `Content-Encoding: aes128gcm`.

Outcomes: 201/202 (any 2xx) SENT; 404/410 GONE (the subscription expired or was withdrawn);
413 FAILED PayloadTooLarge; 429 and 5xx RETRY with the service's Retry-After; other 4xx FAILED
(400 malformed, 401/403 VAPID refused: a subscription made with another application server
key is refused for good); timeouts and connection errors RETRY ("timeout", "unreachable",
"connection lost"); an endpoint that is not a usable URL FAILED "InvalidURL".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from chatmesh_common.clock import Clock, SystemClock

from .base import Outcome, Platform, PushMessage, PushResult, PushTarget
from .common import compact_json, is_transient, retry_later
from .http import H2Client, HttpClient, Reply
from .vapid import VapidSigner, b64url_decode, b64url_encode, public_key_bytes

MAX_ENCRYPTED_BYTES = 4096
# RFC 8030 §5.4: up to 32 characters of the URL-safe base64 alphabet.
TOPIC_MAX_CHARS = 32


def _ece_encrypt(plaintext: bytes, **kwargs: Any) -> bytes:
    # http_ece ships no type hints; this is the one place it is called from here.
    import http_ece  # type: ignore[import-untyped]

    result: bytes = http_ece.encrypt(plaintext, **kwargs)
    return result


class InvalidSubscription(ValueError):
    """The subscription's endpoint or keys cannot be used (says which)."""


def topic_for(collapse_key: str) -> str:
    """A Topic header value for a collapse key: deterministic, 32 URL-safe base64 characters
    (192 bits of SHA-256), so any key, whatever its length or characters, is acceptable."""
    digest = hashlib.sha256(collapse_key.encode("utf-8")).digest()
    return b64url_encode(digest)[:TOPIC_MAX_CHARS]


def urgency_for(message: PushMessage) -> str:
    if message.silent:
        return "low"
    return "high" if message.high_priority else "normal"


def payload_json(message: PushMessage) -> bytes:
    """What the service worker receives: only the keys that are set, no spaces."""
    payload: dict[str, object] = {}
    if message.title:
        payload["title"] = message.title
    if message.body:
        payload["body"] = message.body
    if message.data:
        payload["data"] = dict(message.data)
    if message.badge is not None:
        payload["badge"] = message.badge
    if message.silent:
        payload["silent"] = True
    if message.collapse_key:
        payload["tag"] = message.collapse_key
    return compact_json(payload)


def subscription_keys(keys: Mapping[str, str]) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """The browser's P-256 public key (`p256dh`) and 16-byte auth secret (`auth`)."""
    try:
        p256dh = b64url_decode(keys["p256dh"])
        auth = b64url_decode(keys["auth"])
    except KeyError as e:
        raise InvalidSubscription(f"subscription keys: missing {e.args[0]!r}") from e
    except ValueError as e:
        raise InvalidSubscription("subscription keys: not base64url") from e
    if len(auth) != 16:
        raise InvalidSubscription(f"subscription keys: auth is {len(auth)} bytes, not 16")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError as e:
        raise InvalidSubscription("subscription keys: p256dh is not a P-256 point") from e
    return public, auth


def encrypt_payload(
    plaintext: bytes,
    keys: Mapping[str, str],
    *,
    salt: bytes | None = None,
    sender_key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """The aes128gcm body (RFC 8291 §4) for one subscription: a fresh ECDH key pair per
    message, its public key as the header's keyid, the subscription's auth secret mixed in.
    `salt` and `sender_key` are for reproducing published test vectors only."""
    ua_public, auth = subscription_keys(keys)
    ephemeral = sender_key or ec.generate_private_key(ec.SECP256R1())
    return _ece_encrypt(
        plaintext,
        salt=salt if salt is not None else os.urandom(16),
        private_key=ephemeral,
        dh=public_key_bytes(ua_public),
        auth_secret=auth,
        # keyid left out: http_ece then writes the sender's public key (`private_key`'s) as
        # the header's keyid, which RFC 8291 requires.
        keyid=None,
        version="aes128gcm",
    )


class WebPushProvider:
    """Sends to browser push services. `vapid_private_key_pem`: the P-256 key whose public half
    apps subscribe with; `subject`: the operator's contact (`mailto:` or `https:` URL).
    `require_https`: push services are HTTPS; plain http endpoints only for local test servers.
    """

    platform = Platform.WEBPUSH

    def __init__(
        self,
        vapid_private_key_pem: str | bytes,
        subject: str,
        *,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        client: HttpClient | None = None,
        require_https: bool = True,
    ) -> None:
        self._clock = clock or SystemClock()
        self._vapid = VapidSigner(vapid_private_key_pem, subject, self._clock)
        self._timeout_s = timeout_s
        self._require_https = require_https
        self._own_client = client is None
        self._client = client or H2Client()

    @property
    def application_server_key(self) -> str:
        return self._vapid.public_key

    def build_request(
        self, target: PushTarget, message: PushMessage
    ) -> tuple[dict[str, str], bytes]:
        """Headers and encrypted body for one push; raises InvalidSubscription or ValueError."""
        scheme = target.token.split(":", 1)[0].lower()
        if scheme != "https" and (self._require_https or scheme != "http"):
            raise InvalidSubscription("subscription endpoint: must be an https URL")
        headers = {
            "Authorization": self._vapid.authorization(target.token),
            "TTL": str(max(0, message.ttl_s)),
            "Urgency": urgency_for(message),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        if message.collapse_key:
            headers["Topic"] = topic_for(message.collapse_key)
        return headers, encrypt_payload(payload_json(message), target.keys)

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        try:
            headers, body = self.build_request(target, message)
        except InvalidSubscription:
            return PushResult(Outcome.FAILED, reason="InvalidSubscription")
        except ValueError:
            return PushResult(Outcome.FAILED, reason="InvalidURL")
        if len(body) > MAX_ENCRYPTED_BYTES:
            return PushResult(Outcome.FAILED, reason="PayloadTooLarge")
        reply = await self._client.post(target.token, body, headers, self._timeout_s)
        if isinstance(reply, PushResult):
            return reply
        return self._classify(reply)

    def _classify(self, reply: Reply) -> PushResult:
        status = reply.status
        if 200 <= status < 300:
            return PushResult(Outcome.SENT, status)
        if status in (404, 410):
            return PushResult(Outcome.GONE, status, f"http {status}")
        if status == 413:
            return PushResult(Outcome.FAILED, status, "PayloadTooLarge")
        if is_transient(status):
            return retry_later(reply, f"http {status}", self._clock.now())
        return PushResult(Outcome.FAILED, status, f"http {status}")

    async def close(self) -> None:
        if self._own_client:
            await self._client.close()
