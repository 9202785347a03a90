"""A local Web Push service (RFC 8030) playing the browser vendor's push service.

`subscribe()` does what a browser does on `pushManager.subscribe`: makes a P-256 key pair and a
16-byte auth secret, binds the subscription to the application server key when given, and
hands back the endpoint and the base64url `p256dh` / `auth` keys. Each push is checked the way
push services check it: VAPID (RFC 8292: ES256 signature under `k`, `aud` is this origin, `exp`
in the future and at most 24 h ahead, `sub` present, `k` matches the subscription's key), `TTL`,
`Urgency` and `Topic` syntax, `Content-Encoding: aes128gcm`, at most 4096 bytes; then the body
is decrypted with the subscription's private key and auth secret (RFC 8291), as the browser
would, and the plaintext JSON is recorded with the headers. Answers 201 with a Location.
Served over HTTPS with HTTP/2, as push services are (`tls=False` for plain HTTP/1.1).

Scripted behaviour per subscription: `expire` (410), `unsubscribe` (404 afterwards),
`fail_next` (any status, N times, optional Retry-After), `hang` (no answer until stopped).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from chatmesh_common.clock import Clock, SystemClock
from notify_service.providers.base import Platform, PushTarget
from notify_service.providers.vapid import b64url_decode, b64url_encode, public_key_bytes
from tests.servers.http_stub import HttpStub, Request, Response

MAX_BODY_BYTES = 4096
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URGENCIES = ("very-low", "low", "normal", "high")


def _ece_decrypt(body: bytes, **kwargs: Any) -> bytes:
    import http_ece  # type: ignore[import-untyped]

    result: bytes = http_ece.decrypt(body, **kwargs)
    return result


@dataclass
class Delivery:
    """One accepted push, as the browser's service worker would see it."""

    payload: Any
    plaintext: bytes
    ttl: int
    urgency: str
    topic: str | None
    http_version: str
    headers: dict[str, str]
    claims: dict[str, Any]


@dataclass
class Subscription:
    id: str
    endpoint: str
    p256dh: str
    auth: str
    private_key: ec.EllipticCurvePrivateKey
    application_server_key: str | None
    deliveries: list[Delivery] = field(default_factory=list)
    expired: bool = False
    hanging: bool = False
    # Scripted answers, used one per push before the normal one: (status, headers).
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    # Every refusal, with the reason this service gave: (status, reason).
    refused: list[tuple[int, str]] = field(default_factory=list)

    @property
    def keys(self) -> dict[str, str]:
        return {"p256dh": self.p256dh, "auth": self.auth}

    def target(self) -> PushTarget:
        return PushTarget(Platform.WEBPUSH, self.endpoint, self.keys)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LocalPushService(HttpStub):
    def __init__(self, clock: Clock | None = None, *, tls: bool = True) -> None:
        super().__init__(tls=tls)
        self.clock = clock or SystemClock()
        self.subscriptions: dict[str, Subscription] = {}

    def subscribe(
        self,
        application_server_key: str | None = None,
        *,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        auth: bytes | None = None,
    ) -> Subscription:
        """A new subscription, bound to `application_server_key` when given. `private_key` and
        `auth` replace the browser's random ones (for published test vectors)."""
        private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        sub_id = b64url_encode(os.urandom(18))
        sub = Subscription(
            id=sub_id,
            endpoint=f"{self.origin}/push/{sub_id}",
            p256dh=b64url_encode(public_key_bytes(private_key.public_key())),
            auth=b64url_encode(auth if auth is not None else os.urandom(16)),
            private_key=private_key,
            application_server_key=application_server_key,
        )
        self.subscriptions[sub_id] = sub
        return sub

    def expire(self, sub: Subscription) -> None:
        sub.expired = True

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)

    def fail_next(
        self, sub: Subscription, status: int, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        sub.scripted.extend([(status, headers)] * times)

    def hang(self, sub: Subscription, hanging: bool = True) -> None:
        sub.hanging = hanging

    async def handle(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.startswith("/push/"):
            return Response(404)
        sub = self.subscriptions.get(request.path.removeprefix("/push/"))
        if sub is None:
            return Response(404, body=b"no such subscription")
        if sub.expired:
            return Response(410, body=b"subscription expired")
        try:
            delivery = self._accept(sub, request)
        except _Refused as e:
            sub.refused.append((e.status, e.reason))
            return Response(e.status, {"Content-Type": "text/plain"}, e.reason.encode())
        if sub.hanging:
            await self.hold()
            return Response(503)
        if sub.scripted:
            status, headers = sub.scripted.pop(0)
            return Response(status, headers)
        sub.deliveries.append(delivery)
        location = f"{self.origin}/message/{b64url_encode(os.urandom(12))}"
        return Response(201, {"Location": location})

    def _accept(self, sub: Subscription, request: Request) -> Delivery:
        headers = request.headers
        claims = self._check_vapid(sub, headers.get("authorization", ""))
        ttl_text = headers.get("ttl")
        if ttl_text is None or not (ttl_text.isascii() and ttl_text.isdigit()):
            raise _Refused(400, "TTL header missing or not a number")
        urgency = headers.get("urgency", "normal")
        if urgency not in _URGENCIES:
            raise _Refused(400, f"bad Urgency {urgency!r}")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.match(topic):
            raise _Refused(400, "Topic must be 1-32 URL-safe base64 characters")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refused(400, "Content-Encoding must be aes128gcm")
        if len(request.body) > MAX_BODY_BYTES:
            raise _Refused(413, "payload too large")
        plaintext = self._decrypt(sub, request.body)
        try:
            payload = json.loads(plaintext)
        except ValueError:
            payload = None
        return Delivery(
            payload,
            plaintext,
            int(ttl_text),
            urgency,
            topic,
            request.http_version,
            dict(headers),
            claims,
        )

    def _check_vapid(self, sub: Subscription, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, "Authorization must use the vapid scheme")
        fields: dict[str, str] = {}
        for part in params.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name.strip()] = value.strip()
        token, k = fields.get("t"), fields.get("k")
        if not token or not k:
            raise _Refused(401, "vapid needs t= and k=")
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(k))
        except ValueError as e:
            raise _Refused(401, "k is not a P-256 public key") from e
        if sub.application_server_key is not None and k != sub.application_server_key:
            raise _Refused(403, "k does not match the key the subscription was made with")
        try:
            if jwt.get_unverified_header(token).get("alg") != "ES256":
                raise _Refused(401, "JWT must be ES256")
            claims: dict[str, Any] = jwt.decode(
                token,
                public,
                algorithms=["ES256"],
                options={"verify_exp": False, "verify_aud": False, "require": ["exp", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise _Refused(401, f"JWT refused: {e}") from e
        if claims["aud"] != self.origin:
            raise _Refused(401, f"aud {claims['aud']!r} is not {self.origin!r}")
        exp, now = claims["exp"], self.clock.now()
        if not isinstance(exp, int) or exp <= now:
            raise _Refused(401, "JWT expired")
        if exp > now + 24 * 3600:
            raise _Refused(401, "exp more than 24 hours ahead")
        if not claims.get("sub"):
            raise _Refused(401, "sub missing")
        return claims

    def _decrypt(self, sub: Subscription, body: bytes) -> bytes:
        # RFC 8291 §4: the header's keyid is the sender's 65-byte public key, and the whole
        # message is a single record.
        if len(body) < 21 + 65 + 17:
            raise _Refused(400, "body too short for aes128gcm")
        (rs,) = struct.unpack("!L", body[16:20])
        if body[20] != 65:
            raise _Refused(400, "keyid must be the 65-byte sender public key")
        if len(body) - 86 > rs:
            raise _Refused(400, "push message must be a single record")
        try:
            return _ece_decrypt(
                body,
                private_key=sub.private_key,
                auth_secret=b64url_decode(sub.auth),
                version="aes128gcm",
            )
        except Exception as e:
            raise _Refused(400, f"decryption failed: {e}") from e
