"""FCM: Firebase Cloud Messaging's HTTP v1 API (messages:send), authorised with OAuth 2 access
tokens obtained from a service account's key (the JWT bearer grant, RFC 7523).

The access token is cached until 60 s before it expires; concurrent sends that find it missing
share one fetch, and when that fetch fails they all get its failure instead of each trying
again in turn. A 401 drops the cached token and the push is retried once with a new one.

Classification (a failed push never raises):
- 200 → SENT.
- errorCode UNREGISTERED (404) or SENDER_ID_MISMATCH (403) → GONE.
- INVALID_ARGUMENT (400) → GONE only when FCM names the registration token as the bad field
  (a google.rpc.BadRequest field violation on "message.token"); any other INVALID_ARGUMENT
  (message too big, a bad data key, ...) is our message's fault, not the target's → FAILED.
  The error message text is never parsed.
- 401: a new access token and one retry; still 401 → FAILED. THIRD_PARTY_AUTH_ERROR (401, the
  project's APNs or Web Push credentials) → FAILED at once, a new token cannot fix it.
- 429 (QUOTA_EXCEEDED), 500 (INTERNAL), 503 (UNAVAILABLE), any 5xx → RETRY with Retry-After.
- other 4xx (PERMISSION_DENIED, NOT_FOUND, ...) → FAILED.
- the token endpoint failing in any way → RETRY, reason "oauth ..." (an operator sees a
  revoked key as a stream of "oauth invalid_grant").
- timeout / no connection / connection lost → RETRY "timeout" / "unreachable" /
  "connection lost".
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from chatmesh_common.clock import Clock, SystemClock

from .apns import collapse_id
from .base import Outcome, Platform, PushMessage, PushResult, PushTarget
from .common import compact_json, is_transient, retry_later
from .http import H2Client, Reply
from .retry_after import parse_retry_after

FCM_URL = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
# An access token is used until this long before it expires, so none expires in flight.
TOKEN_EARLY_S = 60
# FCM keeps a message at most 4 weeks.
MAX_TTL_S = 28 * 86400

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_GONE_ERROR_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


def fcm_message(token: str, message: PushMessage, now: float) -> dict[str, Any]:
    """The v1 `message` for one registration token.

    Android gets priority, ttl, collapse_key and (with a notification) the tag that replaces
    an earlier notification; an iOS app registered with FCM gets the matching APNs headers.
    A silent push is a data-only message (no `notification`), background on APNs.
    """
    msg: dict[str, Any] = {"token": token}
    notification = {k: v for k, v in (("title", message.title), ("body", message.body)) if v}
    if message.silent:
        notification = {}
    if notification:
        msg["notification"] = notification
    if message.data:
        msg["data"] = {str(k): str(v) for k, v in message.data.items()}

    ttl_s = min(max(message.ttl_s, 0), MAX_TTL_S)
    android: dict[str, Any] = {
        "priority": "high" if message.high_priority else "normal",
        "ttl": f"{ttl_s}s",
    }
    if message.collapse_key:
        android["collapse_key"] = message.collapse_key
        if notification:
            android["notification"] = {"tag": message.collapse_key}
    msg["android"] = android

    headers = {
        "apns-push-type": "background" if message.silent else "alert",
        "apns-priority": "10" if message.high_priority and not message.silent else "5",
        "apns-expiration": str(int(now) + ttl_s if ttl_s else 0),
    }
    aps: dict[str, Any] = {}
    if message.silent:
        aps["content-available"] = 1
    else:
        if notification:
            aps["sound"] = "default"
        if message.badge is not None:
            aps["badge"] = message.badge
        if message.collapse_key:
            aps["thread-id"] = message.collapse_key
    if message.collapse_key:
        headers["apns-collapse-id"] = collapse_id(message.collapse_key)
    msg["apns"] = {"headers": headers, "payload": {"aps": aps}}
    return msg


class _TokenUnavailable(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.result = PushResult(Outcome.RETRY, reason=reason, retry_after_s=retry_after_s)


class FcmProvider:
    """Sends pushes through FCM for the project of `service_account` (the service account's
    JSON key: project_id, client_email, private_key, optionally private_key_id and
    token_uri). `PushTarget.app_id` overrides the project per target.

    `verify`: an SSL context, a CA bundle path, or True for the system's CAs. `timeout_s`
    bounds each request (token fetch or send) from start to answer.
    """

    platform = Platform.FCM

    def __init__(
        self,
        service_account: Mapping[str, Any],
        base_url: str = FCM_URL,
        *,
        verify: ssl.SSLContext | str | bool = True,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        missing = [
            k for k in ("project_id", "client_email", "private_key") if not service_account.get(k)
        ]
        if missing:
            raise ValueError(f"FCM service account JSON lacks {', '.join(missing)}")
        key = load_pem_private_key(str(service_account["private_key"]).encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the FCM service account's private_key must be an RSA key")
        self._key = key
        self._key_id = str(service_account.get("private_key_id") or "")
        self._project = str(service_account["project_id"])
        self._client_email = str(service_account["client_email"])
        self._token_uri = str(service_account.get("token_uri") or GOOGLE_TOKEN_URI)
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._clock: Clock = clock if clock is not None else SystemClock()

        self._access_token = ""
        self._access_expires_at = 0.0  # clock.monotonic()
        self._lock = asyncio.Lock()
        self._fetches = 0  # token fetches finished, successful or not
        self._fetch_error: _TokenUnavailable | None = None

        self._client = H2Client(verify=verify)

    async def close(self) -> None:
        await self._client.close()

    async def send(self, target: PushTarget, message: PushMessage) -> PushResult:
        if not target.token:
            return PushResult(Outcome.GONE, reason="missing token")
        project = target.app_id or self._project
        url = f"{self._base_url}/v1/projects/{project}/messages:send"
        body = {"message": fcm_message(target.token, message, self._clock.now())}
        result, access_token = await self._send_once(url, body)
        if result.status == 401 and result.reason != "THIRD_PARTY_AUTH_ERROR":
            self._discard_token(access_token)
            result, _ = await self._send_once(url, body)
        return result

    async def _send_once(self, url: str, body: dict[str, Any]) -> tuple[PushResult, str]:
        """One attempt, classified, and the access token it used ("" when none was had)."""
        try:
            access_token = await self._token()
        except _TokenUnavailable as e:
            return e.result, ""
        headers = {"authorization": f"Bearer {access_token}", "content-type": "application/json"}
        answer = await self._client.post(url, compact_json(body), headers, self._timeout_s)
        if isinstance(answer, PushResult):
            return answer, access_token
        return self._classify(answer), access_token

    # --- access tokens ---------------------------------------------------------------------

    async def _token(self) -> str:
        fetches_before = self._fetches
        async with self._lock:
            if self._access_token and self._clock.monotonic() < self._access_expires_at:
                return self._access_token
            if self._fetches != fetches_before and self._fetch_error is not None:
                # A fetch failed while this send waited for it: share the failure rather than
                # queueing one more doomed fetch per waiting send.
                raise self._fetch_error
            # Expiry counts from the request, not the answer: the token's life began at Google
            # somewhere in between.
            started = self._clock.monotonic()
            try:
                token, expires_in = await self._fetch_token()
            except _TokenUnavailable as e:
                self._fetch_error = e
                raise
            finally:
                self._fetches += 1
            self._fetch_error = None
            self._access_token = token
            self._access_expires_at = started + expires_in - TOKEN_EARLY_S
            return token

    def _discard_token(self, token: str) -> None:
        # Only the refused token: concurrent sends refused with it fetch one new token between
        # them, and a token fetched meanwhile is kept.
        if self._access_token == token:
            self._access_token = ""

    async def _fetch_token(self) -> tuple[str, float]:
        iat = int(self._clock.now())
        claims = {
            "iss": self._client_email,
            "scope": SCOPE,
            "aud": self._token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_S,
        }
        headers = {"kid": self._key_id} if self._key_id else None
        assertion = jwt.encode(claims, self._key, algorithm="RS256", headers=headers)
        form = urllib.parse.urlencode({"grant_type": JWT_BEARER_GRANT, "assertion": assertion})
        answer = await self._client.post(
            self._token_uri,
            form.encode(),
            {"content-type": "application/x-www-form-urlencoded"},
            self._timeout_s,
        )
        if isinstance(answer, PushResult):
            raise _TokenUnavailable(f"oauth {answer.reason}")
        body = answer.json_object()
        if answer.status != 200:
            error = body.get("error")
            detail = error if isinstance(error, str) and error else f"http {answer.status}"
            retry_after = parse_retry_after(answer.headers.get("retry-after"), self._clock.now())
            raise _TokenUnavailable(f"oauth {detail}", retry_after)
        token = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise _TokenUnavailable("oauth bad response")
        return token, float(expires_in)

    # --- HTTP ------------------------------------------------------------------------------

    def _classify(self, reply: Reply) -> PushResult:
        status = reply.status
        if status == 200:
            return PushResult(Outcome.SENT, status=status)
        error = reply.json_object().get("error")
        error = error if isinstance(error, dict) else {}
        error_code, bad_fields = _details(error.get("details"))
        grpc_status = error.get("status") if isinstance(error.get("status"), str) else ""
        reason = error_code or grpc_status or f"http {status}"
        if error_code in _GONE_ERROR_CODES:
            return PushResult(Outcome.GONE, status=status, reason=reason)
        if status == 400 and "message.token" in bad_fields:
            return PushResult(Outcome.GONE, status=status, reason=f"{reason} message.token")
        if is_transient(status):
            return retry_later(reply, reason, self._clock.now())
        return PushResult(Outcome.FAILED, status=status, reason=reason)


def _details(details: Any) -> tuple[str, set[str]]:
    """FCM's errorCode, and the fields named by google.rpc.BadRequest field violations."""
    error_code = ""
    fields: set[str] = set()
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == _FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            error_code = detail["errorCode"]
        elif detail.get("@type") == _BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                    fields.add(violation["field"])
    return error_code, fields
