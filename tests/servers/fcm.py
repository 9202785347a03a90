"""A local Firebase Cloud Messaging: Google's OAuth 2 token endpoint (the JWT bearer grant of
a service account) and FCM's HTTP v1 `messages:send`, over plain HTTP/1.1
(tests/servers/http_stub.py).

The token endpoint verifies the assertion like Google does: RS256 signature by the service
account's key, `iss` the service account, `aud` the token URI, a scope, `iat`/`exp` a short
(<= 1 h), current window by the server's clock. It issues opaque access tokens with an expiry.

messages:send checks the bearer token (issued here, not expired, with the messaging scope), the
project, and the message's shape (known fields only, one target, string data values, no
reserved data keys, android priority and ttl formats, the 4096-byte payload limit), and
answers with FCM's JSON: `{"name": "projects/<p>/messages/<id>"}`, or Google's error shape
`{"error": {"code", "message", "status", "details": [FcmError, BadRequest]}}`.
Per registration token, tests can script answers (`FcmReply`), delays (`Hang`), a token no
longer registered (`unregister`) or registered to another project (`register`); the token
endpoint has its own script (`script_token_endpoint`, with `OAuthReply`).

    fcm = FcmServer(project_id="chat-test", client_email=..., public_key=...)
    async with fcm: FcmProvider(fcm.service_account(pem), fcm.origin)
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from chatmesh_common.clock import Clock, SystemClock
from tests.servers.http_stub import Hang, HttpStub, Request, Response

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MESSAGING_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
TOKEN_PATH = "/token"
ACCESS_TOKEN_LIFETIME_S = 3599
MAX_ASSERTION_LIFETIME_S = 3600
MAX_PAYLOAD_BYTES = 4096
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

_SEND_PATH = re.compile(r"/v1/projects/(?P<project>[^/]+)/messages:send")
_REGISTRATION_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{16,4096}")
_DURATION = re.compile(r"\d+(\.\d{1,9})?s")
_MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "fcmOptions",
        "token",
        "topic",
        "condition",
    }
)
_NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
_ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "collapseKey",
        "priority",
        "ttl",
        "restricted_package_name",
        "restrictedPackageName",
        "data",
        "notification",
        "fcm_options",
        "fcmOptions",
        "direct_boot_ok",
        "directBootOk",
    }
)
_APNS_FIELDS = frozenset({"headers", "payload", "fcm_options", "fcmOptions", "live_activity_token"})
_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def make_service_account_key() -> tuple[str, rsa.RSAPublicKey]:
    """A new service account key: (PKCS#8 PEM of the private key, its public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return pem, key.public_key()


@dataclass(frozen=True, slots=True)
class FcmReply:
    """Answer one send to the registration token with FCM's error JSON.

    `error_code`: the FcmError errorCode (UNREGISTERED, QUOTA_EXCEEDED, ...), omitted when "".
    `grpc_status`: defaults to the one FCM pairs with the HTTP status.
    """

    status: int
    error_code: str = ""
    grpc_status: str = ""
    message: str = ""
    bad_fields: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OAuthReply:
    """Answer one token request with this status and OAuth `error`."""

    status: int
    error: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentMessage:
    project: str
    message: Mapping[str, Any]
    access_token: str
    name: str


@dataclass(slots=True)
class _AccessToken:
    expires_at: float
    scopes: frozenset[str]


class FcmServer(HttpStub):
    def __init__(
        self,
        *,
        project_id: str,
        client_email: str,
        public_key: rsa.RSAPublicKey,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.project_id = project_id
        self.client_email = client_email
        self.public_key = public_key
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.messages: list[SentMessage] = []
        self.send_requests = 0
        self.token_requests = 0
        self.issued_tokens: list[str] = []
        self._access_tokens: dict[str, _AccessToken] = {}
        self._scripts: dict[str, deque[FcmReply | Hang]] = {}
        self._token_script: deque[OAuthReply | Hang] = deque()
        self._unregistered: set[str] = set()
        self._token_projects: dict[str, str] = {}

    @property
    def token_uri(self) -> str:
        return f"{self.origin}{TOKEN_PATH}"

    def service_account(self, private_key_pem: str) -> dict[str, str]:
        """The service account JSON key a provider is configured with, pointing here."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "k1",
            "private_key": private_key_pem,
            "client_email": self.client_email,
            "token_uri": self.token_uri,
        }

    # --- scripting -------------------------------------------------------------------------

    def script(self, registration_token: str, *steps: FcmReply | Hang) -> None:
        """Queue steps for the next valid sends to `registration_token`."""
        self._scripts.setdefault(registration_token, deque()).extend(steps)

    def script_token_endpoint(self, *steps: OAuthReply | Hang) -> None:
        """Queue steps for the next token requests (before the assertion is checked)."""
        self._token_script.extend(steps)

    def unregister(self, registration_token: str) -> None:
        """From now on: 404 UNREGISTERED (the app was uninstalled, or the token expired)."""
        self._unregistered.add(registration_token)

    def register(self, registration_token: str, project_id: str) -> None:
        """The token belongs to `project_id`: sends from another project get SENDER_ID_MISMATCH."""
        self._token_projects[registration_token] = project_id

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        self._access_tokens.clear()

    # --- the API ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.path == TOKEN_PATH and request.method == "POST":
            return await self._token(request)
        match = _SEND_PATH.fullmatch(request.path)
        if match is not None and request.method == "POST":
            return await self._send(request, match["project"])
        return _google_error(404, "Requested entity was not found.")

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        scripted = await self.play(
            self._token_script, lambda r: _oauth_error(r.status, r.error, "scripted", r.headers)
        )
        if scripted is not None:
            return scripted
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _oauth_error(400, "invalid_request", "Bad Request")
        form = urllib.parse.parse_qs(request.body.decode(), keep_blank_values=True)
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != JWT_BEARER_GRANT:
            return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        assertion = form.get("assertion", [""])[0]
        if not assertion:
            return _oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            if jwt.get_unverified_header(assertion).get("alg") != "RS256":
                return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={
                    "require": ["iss", "aud", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT: Failed audience check.")
        except jwt.InvalidTokenError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        if claims["iss"] != self.client_email:
            return _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        now = self.clock.now()
        iat, exp = claims["iat"], claims["exp"]
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or exp - iat > MAX_ASSERTION_LIFETIME_S
            or exp <= now
            or iat > now + 60
        ):
            return _oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return _oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience.")
        token = f"ya29.{secrets.token_urlsafe(32)}"
        self._access_tokens[token] = _AccessToken(now + ACCESS_TOKEN_LIFETIME_S, scopes)
        self.issued_tokens.append(token)
        body = {
            "access_token": token,
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "token_type": "Bearer",
        }
        return Response(200, {"content-type": "application/json"}, json.dumps(body).encode())

    async def _send(self, request: Request, project: str) -> Response:
        self.send_requests += 1
        scheme, _, access_token = request.headers.get("authorization", "").partition(" ")
        issued = self._access_tokens.get(access_token) if scheme.lower() == "bearer" else None
        if issued is None or issued.expires_at <= self.clock.now():
            return _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                headers={"www-authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if not issued.scopes & MESSAGING_SCOPES:
            return _google_error(403, "Request had insufficient authentication scopes.")
        if project != self.project_id:
            return _google_error(
                403,
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                f"(or it may not exist).",
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            return _google_error(400, "Invalid JSON payload received.")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _google_error(400, "Request contains an invalid argument.", fields=("message",))
        problem = _check_message(message)
        if problem is not None:
            return problem
        token = message["token"]

        scripted = await self.play(self._scripts.get(token), _scripted_error)
        if scripted is not None:
            return scripted
        owner = self._token_projects.get(token)
        if owner is not None and owner != project:
            return _google_error(403, "SenderId mismatch", error_code="SENDER_ID_MISMATCH")
        if token in self._unregistered:
            return _google_error(404, "Requested entity was not found.", error_code="UNREGISTERED")

        name = f"projects/{project}/messages/0:{secrets.token_hex(8)}"
        if not body.get("validate_only"):
            self.messages.append(SentMessage(project, message, access_token, name))
        return Response(
            200, {"content-type": "application/json"}, json.dumps({"name": name}).encode()
        )


def _scripted_error(reply: FcmReply) -> Response:
    return _google_error(
        reply.status,
        reply.message or "scripted",
        error_code=reply.error_code,
        grpc_status=reply.grpc_status,
        fields=reply.bad_fields,
        headers=reply.headers,
    )


def _check_message(message: dict[str, Any]) -> Response | None:
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        return _unknown_field(unknown[0], "message")
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return _google_error(
            400,
            "Exactly one of token, topic or condition must be given.",
            error_code="INVALID_ARGUMENT",
        )
    token = message.get("token")
    if not isinstance(token, str) or not _REGISTRATION_TOKEN.fullmatch(token):
        return _google_error(
            400,
            "The registration token is not a valid FCM registration token",
            error_code="INVALID_ARGUMENT",
            fields=("message.token",),
        )
    data = message.get("data", {})
    if not isinstance(data, dict):
        return _google_error(400, "Invalid value at 'message.data'", fields=("message.data",))
    for key, value in data.items():
        if not isinstance(value, str):
            return _google_error(
                400,
                f"Invalid value at 'message.data[{key}].value' (TYPE_STRING)",
                fields=(f"message.data[{key}].value",),
            )
        if key in {"from", "notification", "message_type"} or key.startswith(("google", "gcm")):
            return _google_error(
                400, f"Invalid data payload key: {key}", error_code="INVALID_ARGUMENT"
            )
    notification = message.get("notification", {})
    if not isinstance(notification, dict):
        return _google_error(400, "Invalid value at 'message.notification'")
    unknown = sorted(set(notification) - _NOTIFICATION_FIELDS)
    if unknown:
        return _unknown_field(unknown[0], "message.notification")
    android = message.get("android", {})
    if not isinstance(android, dict):
        return _google_error(400, "Invalid value at 'message.android'")
    unknown = sorted(set(android) - _ANDROID_FIELDS)
    if unknown:
        return _unknown_field(unknown[0], "message.android")
    priority = android.get("priority", "NORMAL")
    if not isinstance(priority, str) or priority.upper() not in {"NORMAL", "HIGH"}:
        return _google_error(
            400,
            f"Invalid value at 'message.android.priority' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority!r}",
            fields=("message.android.priority",),
        )
    ttl = android.get("ttl", "0s")
    if not isinstance(ttl, str) or not _DURATION.fullmatch(ttl):
        return _google_error(
            400,
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
            fields=("message.android.ttl",),
        )
    apns = message.get("apns", {})
    if not isinstance(apns, dict):
        return _google_error(400, "Invalid value at 'message.apns'")
    unknown = sorted(set(apns) - _APNS_FIELDS)
    if unknown:
        return _unknown_field(unknown[0], "message.apns")
    headers = apns.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return _google_error(400, "Invalid value at 'message.apns.headers'")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items()) + sum(
        len(str(v).encode()) for v in notification.values()
    )
    if size > MAX_PAYLOAD_BYTES:
        return _google_error(400, "Message is too big", error_code="INVALID_ARGUMENT")
    return None


def _unknown_field(name: str, where: str) -> Response:
    return _google_error(
        400,
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field.",
        fields=(where,),
    )


def _google_error(
    status: int,
    message: str,
    *,
    error_code: str = "",
    grpc_status: str = "",
    fields: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    if fields:
        violations = [{"field": f, "description": message} for f in fields]
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": violations})
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": grpc_status or _GRPC_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Response(
        status,
        {"content-type": "application/json; charset=UTF-8", **(headers or {})},
        json.dumps({"error": error}).encode(),
    )


def _oauth_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"error": error, "error_description": description}
    return Response(
        status,
        {"content-type": "application/json; charset=utf-8", **(headers or {})},
        json.dumps(body).encode(),
    )
