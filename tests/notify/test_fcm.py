"""FcmProvider against a local FCM v1 API and OAuth 2 token endpoint (tests/servers/fcm.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chatmesh_common.clock import ManualClock
from notify_service.providers.base import Outcome, Platform, PushMessage, PushTarget
from notify_service.providers.fcm import JWT_BEARER_GRANT, SCOPE, FcmProvider
from tests.servers.fcm import FcmReply, FcmServer, OAuthReply, make_service_account_key
from tests.servers.http_stub import Hang
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(20)

PROJECT = "chatmesh-test"
CLIENT_EMAIL = "push@chatmesh-test.iam.gserviceaccount.com"
TOKEN = "fcm:APA91b-device-one_0123456789"
ALERT = PushMessage(title="Ada", body="hello")


@dataclass(frozen=True)
class AccountKey:
    pem: str
    public_key: rsa.RSAPublicKey


@pytest.fixture(scope="module")
def account_key() -> AccountKey:
    pem, public_key = make_service_account_key()
    return AccountKey(pem, public_key)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fcm(account_key: AccountKey, clock: ManualClock) -> AsyncIterator[FcmServer]:
    server = FcmServer(
        project_id=PROJECT,
        client_email=CLIENT_EMAIL,
        public_key=account_key.public_key,
        clock=clock,
    )
    async with server:
        yield server


def make_provider(
    fcm: FcmServer,
    pem: str,
    clock: ManualClock,
    *,
    base_url: str = "",
    timeout_s: float = 5.0,
) -> FcmProvider:
    return FcmProvider(
        fcm.service_account(pem), base_url or fcm.origin, timeout_s=timeout_s, clock=clock
    )


@pytest.fixture
async def provider(
    fcm: FcmServer, account_key: AccountKey, clock: ManualClock
) -> AsyncIterator[FcmProvider]:
    p = make_provider(fcm, account_key.pem, clock)
    yield p
    await p.close()


def target(token: str = TOKEN, app_id: str = "") -> PushTarget:
    return PushTarget(Platform.FCM, token, app_id=app_id)


def sent_message(fcm: FcmServer) -> dict[str, Any]:
    [sent] = fcm.messages
    assert sent.project == PROJECT
    return dict(sent.message)


# --- what is sent -------------------------------------------------------------------------


async def test_notification_message_has_android_and_apns_options(
    fcm: FcmServer, provider: FcmProvider, clock: ManualClock
) -> None:
    """An alert: notification, string data, android priority/ttl/collapse/tag, APNs headers."""
    message = PushMessage(
        title="Ada",
        body="hello",
        data={"conversation_id": "c1", "seq": "42"},
        badge=3,
        collapse_key="c1",
        ttl_s=600,
    )
    result = await provider.send(target(), message)
    assert (result.outcome, result.status) == (Outcome.SENT, 200)
    assert sent_message(fcm) == {
        "token": TOKEN,
        "notification": {"title": "Ada", "body": "hello"},
        "data": {"conversation_id": "c1", "seq": "42"},
        "android": {
            "priority": "high",
            "ttl": "600s",
            "collapse_key": "c1",
            "notification": {"tag": "c1"},
        },
        "apns": {
            "headers": {
                "apns-push-type": "alert",
                "apns-priority": "10",
                "apns-expiration": str(int(clock.now()) + 600),
                "apns-collapse-id": "c1",
            },
            "payload": {"aps": {"sound": "default", "badge": 3, "thread-id": "c1"}},
        },
    }


async def test_silent_push_is_a_data_only_message(fcm: FcmServer, provider: FcmProvider) -> None:
    """A silent push has no notification, and is background with priority 5 for APNs."""
    message = PushMessage(title="ignored", data={"seq": "7"}, collapse_key="c1", silent=True)
    assert (await provider.send(target(), message)).outcome is Outcome.SENT
    sent = sent_message(fcm)
    assert "notification" not in sent
    assert sent["data"] == {"seq": "7"}
    assert sent["android"] == {"priority": "high", "ttl": "86400s", "collapse_key": "c1"}
    assert sent["apns"]["headers"]["apns-push-type"] == "background"
    assert sent["apns"]["headers"]["apns-priority"] == "5"
    assert sent["apns"]["payload"] == {"aps": {"content-available": 1}}


async def test_low_priority_is_android_normal(fcm: FcmServer, provider: FcmProvider) -> None:
    """high_priority=False: android priority normal, apns-priority 5."""
    await provider.send(target(), PushMessage(title="t", high_priority=False))
    sent = sent_message(fcm)
    assert sent["android"]["priority"] == "normal"
    assert sent["apns"]["headers"]["apns-priority"] == "5"


# --- classification -----------------------------------------------------------------------


async def test_unregistered_token_is_gone(fcm: FcmServer, provider: FcmProvider) -> None:
    """404 UNREGISTERED: GONE."""
    fcm.unregister(TOKEN)
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (Outcome.GONE, 404, "UNREGISTERED")


async def test_sender_id_mismatch_is_gone(fcm: FcmServer, provider: FcmProvider) -> None:
    """403 SENDER_ID_MISMATCH (a token of another project): GONE."""
    fcm.register(TOKEN, "someone-else")
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.GONE,
        403,
        "SENDER_ID_MISMATCH",
    )


async def test_malformed_registration_token_is_gone(fcm: FcmServer, provider: FcmProvider) -> None:
    """400 INVALID_ARGUMENT naming message.token as the bad field: GONE."""
    result = await provider.send(target("not a token"), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.GONE,
        400,
        "INVALID_ARGUMENT message.token",
    )


async def test_invalid_argument_about_the_message_fails(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """400 INVALID_ARGUMENT for a too big message says nothing about the token: FAILED."""
    result = await provider.send(target(), PushMessage(title="t", body="x" * 5000))
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        400,
        "INVALID_ARGUMENT",
    )


async def test_reserved_data_key_fails(fcm: FcmServer, provider: FcmProvider) -> None:
    """A data key FCM reserves ("from") is refused: FAILED, the token is kept."""
    result = await provider.send(target(), PushMessage(data={"from": "x"}))
    assert (result.outcome, result.reason) == (Outcome.FAILED, "INVALID_ARGUMENT")


async def test_other_project_without_permission_fails(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """PushTarget.app_id picks the project; one we may not send to is FAILED PERMISSION_DENIED."""
    result = await provider.send(target(app_id="not-ours"), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        403,
        "PERMISSION_DENIED",
    )


async def test_quota_exceeded_is_retry_with_retry_after(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """429 QUOTA_EXCEEDED: RETRY with the Retry-After seconds."""
    fcm.script(TOKEN, FcmReply(429, "QUOTA_EXCEEDED", headers={"retry-after": "45"}))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason, result.retry_after_s) == (
        Outcome.RETRY,
        429,
        "QUOTA_EXCEEDED",
        45.0,
    )


@pytest.mark.parametrize(
    ("status", "error_code", "retry_after", "expected_after"),
    [(503, "UNAVAILABLE", "12", 12.0), (500, "INTERNAL", None, None)],
)
async def test_server_errors_are_retry(
    fcm: FcmServer,
    provider: FcmProvider,
    status: int,
    error_code: str,
    retry_after: str | None,
    expected_after: float | None,
) -> None:
    """503 UNAVAILABLE and 500 INTERNAL: RETRY, with Retry-After when sent."""
    headers = {"retry-after": retry_after} if retry_after else {}
    fcm.script(TOKEN, FcmReply(status, error_code, headers=headers))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason, result.retry_after_s) == (
        Outcome.RETRY,
        status,
        error_code,
        expected_after,
    )


async def test_third_party_auth_error_fails_without_a_new_token(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """401 THIRD_PARTY_AUTH_ERROR (the project's APNs credentials): FAILED, no token refetch."""
    fcm.script(TOKEN, FcmReply(401, "THIRD_PARTY_AUTH_ERROR"))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        401,
        "THIRD_PARTY_AUTH_ERROR",
    )
    assert (fcm.token_requests, fcm.send_requests) == (1, 1)


# --- access tokens ------------------------------------------------------------------------


async def test_access_token_is_cached_across_sends(fcm: FcmServer, provider: FcmProvider) -> None:
    """One token fetch serves many sends."""
    for _ in range(3):
        assert (await provider.send(target(), ALERT)).outcome is Outcome.SENT
    assert fcm.token_requests == 1
    assert {m.access_token for m in fcm.messages} == {fcm.issued_tokens[0]}


async def test_access_token_is_refetched_60_s_before_it_expires(
    fcm: FcmServer, provider: FcmProvider, clock: ManualClock
) -> None:
    """A token for 3599 s is used for 3539 s, then replaced."""
    await provider.send(target(), ALERT)
    clock.advance(3538)
    await provider.send(target(), ALERT)
    assert fcm.token_requests == 1
    clock.advance(2)
    assert (await provider.send(target(), ALERT)).outcome is Outcome.SENT
    assert fcm.token_requests == 2
    assert fcm.messages[-1].access_token == fcm.issued_tokens[1]


async def test_concurrent_sends_share_one_token_fetch(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """20 concurrent first sends make one token request between them."""
    fcm.script_token_endpoint(Hang(0.1))
    results = await asyncio.gather(*(provider.send(target(), ALERT) for _ in range(20)))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert fcm.token_requests == 1
    assert len(fcm.messages) == 20


async def test_revoked_access_token_is_replaced_and_the_push_retried(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """401: the cached token is dropped, a new one fetched, the push sent again: SENT."""
    await provider.send(target(), ALERT)
    fcm.revoke_access_tokens()
    result = await provider.send(target(), ALERT)
    assert result.outcome is Outcome.SENT
    assert (fcm.token_requests, fcm.send_requests) == (2, 3)
    assert fcm.messages[-1].access_token == fcm.issued_tokens[1]


async def test_401_after_a_new_token_fails(fcm: FcmServer, provider: FcmProvider) -> None:
    """401 again with a freshly fetched token: FAILED UNAUTHENTICATED, no third attempt."""
    fcm.script(TOKEN, FcmReply(401), FcmReply(401))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        401,
        "UNAUTHENTICATED",
    )
    assert (fcm.token_requests, fcm.send_requests) == (2, 2)


async def test_token_endpoint_error_is_retry(fcm: FcmServer, provider: FcmProvider) -> None:
    """The token endpoint answering 503: RETRY with its Retry-After; nothing is sent."""
    fcm.script_token_endpoint(OAuthReply(503, headers={"retry-after": "10"}))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason, result.retry_after_s) == (
        Outcome.RETRY,
        None,
        "oauth http 503",
        10.0,
    )
    assert fcm.send_requests == 0


async def test_assertion_with_an_unknown_key_is_refused_and_retry(
    fcm: FcmServer, clock: ManualClock
) -> None:
    """A key the token endpoint does not know: the grant is refused, RETRY "oauth invalid_grant"."""
    pem, _ = make_service_account_key()
    p = make_provider(fcm, pem, clock)
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "oauth invalid_grant")
    assert fcm.issued_tokens == []


async def test_concurrent_sends_share_a_failed_token_fetch(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """When the shared fetch fails, every waiting send gets its failure; a later send refetches."""
    fcm.script_token_endpoint(Hang(0.1), OAuthReply(500, "internal_failure"))
    results = await asyncio.gather(*(provider.send(target(), ALERT) for _ in range(10)))
    assert {(r.outcome, r.reason) for r in results} == {(Outcome.RETRY, "oauth internal_failure")}
    assert fcm.token_requests == 1
    assert (await provider.send(target(), ALERT)).outcome is Outcome.SENT
    assert fcm.token_requests == 2


# --- transport ----------------------------------------------------------------------------


async def test_send_timeout_is_retry_quickly(
    fcm: FcmServer, account_key: AccountKey, clock: ManualClock
) -> None:
    """No answer within timeout_s: RETRY "timeout"."""
    fcm.script(TOKEN, Hang(10))
    p = make_provider(fcm, account_key.pem, clock, timeout_s=0.3)
    try:
        started = time.monotonic()
        result = await p.send(target(), ALERT)
        assert time.monotonic() - started < 2.0
    finally:
        await p.close()
    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, None, "timeout")


async def test_token_endpoint_timeout_is_retry(
    fcm: FcmServer, account_key: AccountKey, clock: ManualClock
) -> None:
    """A token endpoint that does not answer: RETRY "oauth timeout"."""
    fcm.script_token_endpoint(Hang(10))
    p = make_provider(fcm, account_key.pem, clock, timeout_s=0.3)
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "oauth timeout")


async def test_unreachable_fcm_is_retry(
    fcm: FcmServer, account_key: AccountKey, clock: ManualClock
) -> None:
    """Connection refused by the FCM host: RETRY "unreachable"."""
    p = make_provider(fcm, account_key.pem, clock, base_url=f"http://127.0.0.1:{free_port()}")
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, None, "unreachable")


def test_service_account_must_have_project_email_and_key() -> None:
    """A service account JSON missing fields is refused at construction, naming them."""
    with pytest.raises(ValueError, match="project_id, private_key"):
        FcmProvider({"client_email": CLIENT_EMAIL})


# --- the stand-in refuses what Google refuses ---------------------------------------------


def assertion(key: AccountKey, fcm: FcmServer, clock: ManualClock, **claims: Any) -> str:
    now = int(clock.now())
    base = {
        "iss": CLIENT_EMAIL,
        "scope": SCOPE,
        "aud": fcm.token_uri,
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode({**base, **claims}, key.pem, algorithm="RS256")


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({}, ""),
        ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
        ({"exp": 1_700_000_000 + 7200}, "invalid_grant"),
        ({"iat": 1_700_000_000 - 7200, "exp": 1_700_000_000 - 3600}, "invalid_grant"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant"),
    ],
)
async def test_local_token_endpoint_checks_the_assertion(
    fcm: FcmServer,
    account_key: AccountKey,
    clock: ManualClock,
    claims: dict[str, Any],
    error: str,
) -> None:
    """The stand-in grants a token only for a current, short-lived assertion to its audience."""
    form = {
        "grant_type": JWT_BEARER_GRANT,
        "assertion": assertion(account_key, fcm, clock, **claims),
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(fcm.token_uri, data=form)
    if error:
        assert (response.status_code, response.json()["error"]) == (400, error)
    else:
        assert response.status_code == 200 and response.json()["access_token"]


async def test_local_fcm_refuses_unknown_fields_and_foreign_tokens(
    fcm: FcmServer, provider: FcmProvider
) -> None:
    """messages:send wants an access token it issued, and only known message fields."""
    url = f"{fcm.origin}/v1/projects/{PROJECT}/messages:send"
    body = {"message": {"token": TOKEN, "ttl": "10s"}}
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=body, headers={"authorization": "Bearer ya29.x"})
        assert (response.status_code, response.json()["error"]["status"]) == (
            401,
            "UNAUTHENTICATED",
        )
        await provider.send(target(), ALERT)  # makes the provider fetch a token
        headers = {"authorization": f"Bearer {fcm.issued_tokens[0]}"}
        response = await client.post(url, json=body, headers=headers)
    assert response.status_code == 400
    assert 'Unknown name "ttl"' in response.json()["error"]["message"]


async def test_connection_closed_without_an_answer_is_retry(
    fcm: FcmServer, account_key: AccountKey, clock: ManualClock
) -> None:
    """A peer that reads the request and hangs up: RETRY "connection lost"."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = make_provider(fcm, account_key.pem, clock, base_url=f"http://127.0.0.1:{port}")
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
        server.close()
        await server.wait_closed()
    assert (result.outcome, result.status, result.reason) == (
        Outcome.RETRY,
        None,
        "connection lost",
    )
