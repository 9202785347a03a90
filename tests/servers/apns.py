"""A local APNs: Apple's HTTP/2 provider API (POST /3/device/<token>) with token-based auth,
served over TLS with ALPN h2 only, like api.push.apple.com (tests/servers/http_stub.py).

It checks what Apple checks, in about Apple's order, and answers with Apple's status codes and
`{"reason": ...}` bodies: HTTP/2 only; the path; a provider token (ES256 JWT whose `kid` is
the configured key, signed by it, `iss` the team, `iat` under an hour old by the server's
clock); the topic; apns-push-type, apns-priority, apns-expiration, apns-collapse-id, apns-id;
the payload (JSON, at most 4096 bytes). Accepted notifications are recorded with their headers
and payload. Per device token, tests can script answers (`Reply`), delays (`Hang`), a token
that is no longer registered (`unregister`) or that belongs to another app (`register`).

    apns = ApnsServer(team_id="TEAM123456", key_id="KEY1234567", public_key=..., topics={...})
    async with apns: ApnsProvider(..., apns.origin, verify=apns.ca_file)
"""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from chatmesh_common.clock import Clock, SystemClock
from tests.servers.http_stub import Hang, HttpStub, Request, Response

MAX_PAYLOAD_BYTES = 4096
TOKEN_MAX_AGE_S = 3600
PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
        "widgets",
        "controls",
    }
)
_DEVICE_PATH = re.compile(r"/3/device/(?P<token>[^/]*)")
_DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def make_signing_key() -> tuple[str, ec.EllipticCurvePublicKey]:
    """A new .p8-style key: (PKCS#8 PEM of the private key, its public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return pem, key.public_key()


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer one request for the device token with this status and Apple reason."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    device_token: str
    headers: Mapping[str, str]
    payload: Mapping[str, Any]
    apns_id: str
    provider_token: str
    # The client's (host, port): requests on one HTTP/2 connection share it.
    connection: tuple[str, int]


class ApnsServer(HttpStub):
    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        public_key: ec.EllipticCurvePublicKey,
        topics: Iterable[str],
        clock: Clock | None = None,
    ) -> None:
        # APNs negotiates h2 only; nothing else reaches it.
        super().__init__(tls=True, h2_only=True)
        self.team_id = team_id
        self.key_id = key_id
        self.public_key = public_key
        self.topics = frozenset(topics)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.accepted: list[Notification] = []
        self.requests = 0
        self._scripts: dict[str, deque[Reply | Hang]] = {}
        self._unregistered: dict[str, float] = {}
        self._token_topics: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._seen_tokens: set[str] = set()

    # --- scripting -------------------------------------------------------------------------

    def script(self, device_token: str, *steps: Reply | Hang) -> None:
        """Queue steps for the next requests to `device_token` that pass validation."""
        self._scripts.setdefault(device_token.lower(), deque()).extend(steps)

    def unregister(self, device_token: str, at: float) -> None:
        """From now on: 410 Unregistered, with `at` (epoch seconds) as the timestamp."""
        self._unregistered[device_token.lower()] = at

    def register(self, device_token: str, topic: str) -> None:
        """The token belongs to `topic`: other topics get 400 DeviceTokenNotForTopic."""
        self._token_topics[device_token.lower()] = topic

    def revoke_provider_tokens(self) -> None:
        """Every provider token seen so far answers 403 ExpiredProviderToken from now on."""
        self._revoked |= self._seen_tokens

    @property
    def provider_tokens(self) -> list[str]:
        """Distinct provider tokens of accepted notifications, in first-use order."""
        return list(dict.fromkeys(n.provider_token for n in self.accepted))

    # --- the API ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4())
        if request.http_version != "2":
            return Response(505)
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", apns_id)
        match = _DEVICE_PATH.fullmatch(request.path)
        if match is None:
            return _error(404, "BadPath", apns_id)
        device_token = match["token"]
        if not device_token:
            return _error(400, "MissingDeviceToken", apns_id)
        names = [name for name, _ in request.header_list]
        if len(names) != len(set(names)):
            return _error(400, "DuplicateHeaders", apns_id)

        auth_error = self._check_provider_token(request.headers.get("authorization", ""))
        if auth_error:
            return _error(403, auth_error, apns_id)
        provider_token = request.headers["authorization"].partition(" ")[2]

        topic = request.headers.get("apns-topic", "")
        if not topic:
            return _error(400, "MissingTopic", apns_id)
        if topic not in self.topics:
            return _error(400, "TopicDisallowed", apns_id)
        header_error = _check_headers(request.headers)
        if header_error:
            return _error(400, header_error, apns_id)
        if not _DEVICE_TOKEN.fullmatch(device_token):
            return _error(400, "BadDeviceToken", apns_id)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _error(413, "PayloadTooLarge", apns_id)
        if not request.body:
            return _error(400, "PayloadEmpty", apns_id)
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            # Apple documents no reason for a payload that is not a JSON object.
            return _error(400, "BadPayload", apns_id)

        key = device_token.lower()
        scripted = await self.play(
            self._scripts.get(key), lambda r: _error(r.status, r.reason, apns_id, r.headers)
        )
        if scripted is not None:
            return scripted
        registered_topic = self._token_topics.get(key)
        if registered_topic is not None and registered_topic != topic:
            return _error(400, "DeviceTokenNotForTopic", apns_id)
        if key in self._unregistered:
            body = {"reason": "Unregistered", "timestamp": int(self._unregistered[key] * 1000)}
            return _json(410, body, apns_id)

        self.accepted.append(
            Notification(
                device_token=device_token,
                headers=dict(request.headers),
                payload=payload,
                apns_id=apns_id,
                provider_token=provider_token,
                connection=request.client,
            )
        )
        return Response(200, headers={"apns-id": apns_id})

    def _check_provider_token(self, authorization: str) -> str:
        """Apple's 403 reason for the authorization header, or "" when it is good."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
            return "InvalidProviderToken"
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if claims["iss"] != self.team_id or not isinstance(claims["iat"], int):
            return "InvalidProviderToken"
        if token in self._revoked or self.clock.now() - claims["iat"] > TOKEN_MAX_AGE_S:
            return "ExpiredProviderToken"
        self._seen_tokens.add(token)
        return ""


def _check_headers(headers: Mapping[str, str]) -> str:
    push_type = headers.get("apns-push-type")
    if push_type not in PUSH_TYPES:
        return "InvalidPushType"
    priority = headers.get("apns-priority", "10")
    if priority not in {"1", "5", "10"}:
        return "BadPriority"
    if push_type == "background" and priority == "10":
        # Apple: a background notification sent with priority 10 is an error.
        return "BadPriority"
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        return "BadExpirationDate"
    collapse_id = headers.get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > 64:
        return "BadCollapseId"
    apns_id = headers.get("apns-id")
    if apns_id is not None and not _UUID.fullmatch(apns_id):
        return "BadMessageId"
    return ""


def _json(
    status: int, body: Mapping[str, Any], apns_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        status,
        headers={"apns-id": apns_id, "content-type": "application/json", **(headers or {})},
        body=json.dumps(body).encode(),
    )


def _error(
    status: int, reason: str, apns_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json(status, {"reason": reason}, apns_id, headers)
