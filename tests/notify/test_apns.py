"""ApnsProvider against a local APNs (tests/servers/apns.py) over TLS and HTTP/2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from chatmesh_common.clock import ManualClock
from notify_service.providers.apns import ApnsProvider
from notify_service.providers.base import Outcome, Platform, PushMessage, PushTarget
from tests.servers.apns import ApnsServer, Reply, make_signing_key
from tests.servers.http_stub import Hang
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(20)

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.chat"
OTHER_TOPIC = "com.example.chat.beta"
DEVICE = "a1" * 32
ALERT = PushMessage(title="Ada", body="hello")


@dataclass(frozen=True)
class SigningKey:
    pem: str
    public_key: ec.EllipticCurvePublicKey


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    pem, public_key = make_signing_key()
    return SigningKey(pem, public_key)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def apns(signing_key: SigningKey, clock: ManualClock) -> AsyncIterator[ApnsServer]:
    server = ApnsServer(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=signing_key.public_key,
        topics={TOPIC, OTHER_TOPIC},
        clock=clock,
    )
    async with server:
        yield server


def make_provider(
    apns: ApnsServer, key: SigningKey, clock: ManualClock, *, timeout_s: float = 5.0
) -> ApnsProvider:
    """A provider for `apns`, trusting it through its CA file (a CA bundle path)."""
    return ApnsProvider(
        TEAM_ID,
        KEY_ID,
        key.pem,
        TOPIC,
        apns.origin,
        verify=apns.ca_file,
        timeout_s=timeout_s,
        clock=clock,
    )


@pytest.fixture
async def provider(
    apns: ApnsServer, signing_key: SigningKey, clock: ManualClock
) -> AsyncIterator[ApnsProvider]:
    p = make_provider(apns, signing_key, clock)
    yield p
    await p.close()


def target(token: str = DEVICE, app_id: str = "") -> PushTarget:
    return PushTarget(Platform.APNS, token, app_id=app_id)


# --- what is sent -------------------------------------------------------------------------


async def test_alert_is_sent_with_apple_headers_and_payload(
    apns: ApnsServer, provider: ApnsProvider, clock: ManualClock
) -> None:
    """An alert carries title, body, sound, badge, thread-id, the data keys, and its headers."""
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
    [sent] = apns.accepted
    assert sent.device_token == DEVICE
    assert sent.headers["apns-topic"] == TOPIC
    assert sent.headers["apns-push-type"] == "alert"
    assert sent.headers["apns-priority"] == "10"
    assert sent.headers["apns-collapse-id"] == "c1"
    assert sent.headers["apns-expiration"] == str(int(clock.now()) + 600)
    assert sent.payload == {
        "aps": {
            "alert": {"title": "Ada", "body": "hello"},
            "sound": "default",
            "badge": 3,
            "thread-id": "c1",
        },
        "conversation_id": "c1",
        "seq": "42",
    }


async def test_push_id_is_the_apns_id(apns: ApnsServer, provider: ApnsProvider) -> None:
    """A push's id goes out as apns-id, so every try of one push names the same notification."""
    message = PushMessage(title="Ada", body="hi", push_id="6f1c2a4e-9b7d-5c3e-8a1f-0d2e4b6c8a01")
    result = await provider.send(target(), message)
    assert result.outcome is Outcome.SENT
    [sent] = apns.accepted
    assert sent.headers["apns-id"] == message.push_id


async def test_silent_push_is_background_with_priority_5_and_content_available(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """A silent push is push type background, priority 5, and aps holds only content-available."""
    message = PushMessage(title="ignored", badge=1, data={"seq": "7"}, silent=True)
    result = await provider.send(target(), message)
    assert result.outcome is Outcome.SENT
    [sent] = apns.accepted
    assert sent.headers["apns-push-type"] == "background"
    assert sent.headers["apns-priority"] == "5"
    assert sent.payload == {"aps": {"content-available": 1}, "seq": "7"}


async def test_low_priority_alert_uses_priority_5(apns: ApnsServer, provider: ApnsProvider) -> None:
    """high_priority=False sends apns-priority 5."""
    await provider.send(target(), PushMessage(title="t", high_priority=False))
    assert apns.accepted[0].headers["apns-priority"] == "5"


async def test_alert_without_text_has_no_alert_and_no_sound(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """With no title and body, aps has neither alert nor sound (only the badge)."""
    await provider.send(target(), PushMessage(badge=2, data={"message_id": "m1"}))
    [sent] = apns.accepted
    assert sent.payload == {"aps": {"badge": 2}, "message_id": "m1"}
    assert "apns-collapse-id" not in sent.headers


async def test_target_app_id_overrides_the_default_topic(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """PushTarget.app_id is sent as apns-topic."""
    await provider.send(target(app_id=OTHER_TOPIC), ALERT)
    assert apns.accepted[0].headers["apns-topic"] == OTHER_TOPIC


async def test_long_collapse_key_becomes_a_64_byte_collapse_id(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """A collapse key over 64 bytes is sent as its SHA-256 hex, which APNs accepts."""
    result = await provider.send(target(), PushMessage(title="t", collapse_key="k" * 100))
    assert result.outcome is Outcome.SENT
    collapse_id = apns.accepted[0].headers["apns-collapse-id"]
    assert len(collapse_id) == 64 and collapse_id != "k" * 64


async def test_zero_ttl_sends_expiration_0(apns: ApnsServer, provider: ApnsProvider) -> None:
    """ttl_s=0 means deliver now or never: apns-expiration 0."""
    await provider.send(target(), PushMessage(title="t", ttl_s=0))
    assert apns.accepted[0].headers["apns-expiration"] == "0"


async def test_payload_over_4096_bytes_fails_without_sending(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """A payload APNs would refuse is FAILED PayloadTooLarge and never sent."""
    result = await provider.send(target(), PushMessage(title="t", body="x" * 4100))
    assert (result.outcome, result.reason, result.status) == (
        Outcome.FAILED,
        "PayloadTooLarge",
        None,
    )
    assert apns.requests == 0


# --- classification -----------------------------------------------------------------------


async def test_unregistered_device_is_gone(
    apns: ApnsServer, provider: ApnsProvider, clock: ManualClock
) -> None:
    """410 Unregistered: the target is GONE."""
    apns.unregister(DEVICE, at=clock.now() - 60)
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (Outcome.GONE, 410, "Unregistered")


async def test_bad_device_token_is_gone(apns: ApnsServer, provider: ApnsProvider) -> None:
    """400 BadDeviceToken (a hex token of the wrong length): GONE."""
    result = await provider.send(target("ab" * 31), ALERT)
    assert (result.outcome, result.status, result.reason) == (Outcome.GONE, 400, "BadDeviceToken")


async def test_non_hex_token_is_gone_without_sending(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """A token that is not hex at all is GONE BadDeviceToken, and nothing is sent."""
    result = await provider.send(target("not/a-token"), ALERT)
    assert (result.outcome, result.reason) == (Outcome.GONE, "BadDeviceToken")
    assert apns.requests == 0


async def test_device_token_of_another_app_is_gone(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """400 DeviceTokenNotForTopic: GONE."""
    apns.register(DEVICE, OTHER_TOPIC)
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.reason) == (Outcome.GONE, "DeviceTokenNotForTopic")


async def test_other_400_fails_with_apples_reason(provider: ApnsProvider) -> None:
    """400 TopicDisallowed (a topic of another team): FAILED with the reason."""
    result = await provider.send(target(app_id="com.other.app"), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        400,
        "TopicDisallowed",
    )


async def test_413_fails(apns: ApnsServer, provider: ApnsProvider) -> None:
    """413 PayloadTooLarge from APNs: FAILED."""
    apns.script(DEVICE, Reply(413, "PayloadTooLarge"))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        413,
        "PayloadTooLarge",
    )


async def test_429_is_retry_with_retry_after(apns: ApnsServer, provider: ApnsProvider) -> None:
    """429 TooManyRequests: RETRY, with the Retry-After seconds."""
    apns.script(DEVICE, Reply(429, "TooManyRequests", {"retry-after": "30"}))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason, result.retry_after_s) == (
        Outcome.RETRY,
        429,
        "TooManyRequests",
        30.0,
    )


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "InternalServerError"), (503, "ServiceUnavailable")]
)
async def test_server_error_is_retry(
    apns: ApnsServer, provider: ApnsProvider, status: int, reason: str
) -> None:
    """5xx: RETRY with Apple's reason, no Retry-After when none was sent."""
    apns.script(DEVICE, Reply(status, reason))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.status, result.reason, result.retry_after_s) == (
        Outcome.RETRY,
        status,
        reason,
        None,
    )


async def test_503_honours_retry_after_http_date(
    apns: ApnsServer, provider: ApnsProvider, clock: ManualClock
) -> None:
    """A Retry-After HTTP-date becomes seconds from the provider's clock."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(clock.now() + 90))
    apns.script(DEVICE, Reply(503, "ServiceUnavailable", {"retry-after": when}))
    result = await provider.send(target(), ALERT)
    assert (result.outcome, result.retry_after_s) == (Outcome.RETRY, 90.0)


async def test_errors_then_success_each_classified(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """The provider does not retry on its own: two 500s, then SENT on the third send."""
    apns.script(DEVICE, Reply(500, "InternalServerError"), Reply(500, "InternalServerError"))
    outcomes = [(await provider.send(target(), ALERT)).outcome for _ in range(3)]
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.SENT]
    assert apns.requests == 3


async def test_invalid_provider_token_fails(apns: ApnsServer, clock: ManualClock) -> None:
    """A token signed with a key APNs does not know: FAILED 403 InvalidProviderToken."""
    pem, public_key = make_signing_key()
    p = make_provider(apns, SigningKey(pem, public_key), clock)
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        403,
        "InvalidProviderToken",
    )


# --- the provider token -------------------------------------------------------------------


async def test_provider_token_is_reused_across_sends(
    apns: ApnsServer, provider: ApnsProvider, clock: ManualClock
) -> None:
    """Sends within 50 minutes share one provider token."""
    for _ in range(3):
        assert (await provider.send(target(), ALERT)).outcome is Outcome.SENT
        clock.advance(20 * 60 - 100)
    assert len(apns.accepted) == 3
    assert len(apns.provider_tokens) == 1


async def test_provider_token_is_refreshed_after_50_minutes(
    apns: ApnsServer, provider: ApnsProvider, clock: ManualClock
) -> None:
    """After 50 minutes a new token is made (APNs refuses tokens older than an hour)."""
    await provider.send(target(), ALERT)
    clock.advance(49 * 60)
    await provider.send(target(), ALERT)
    assert len(apns.provider_tokens) == 1
    clock.advance(60)
    await provider.send(target(), ALERT)
    clock.advance(15 * 60)  # 65 minutes after the first token was made
    await provider.send(target(), ALERT)
    assert [r.provider_token for r in apns.accepted].count(apns.provider_tokens[1]) == 2
    assert len(apns.provider_tokens) == 2


async def test_expired_provider_token_is_replaced_and_the_push_retried(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """403 ExpiredProviderToken: a new token, the same push sent again at once, SENT."""
    await provider.send(target(), ALERT)
    apns.revoke_provider_tokens()
    result = await provider.send(target(), ALERT)
    assert result.outcome is Outcome.SENT
    assert apns.requests == 3
    assert len(apns.provider_tokens) == 2


async def test_concurrent_sends_refused_with_an_expired_token_make_one_new_token(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """Many sends refused with the same expired token replace it once, not once each."""
    await provider.send(target(), ALERT)
    apns.revoke_provider_tokens()
    results = await asyncio.gather(*(provider.send(target(), ALERT) for _ in range(10)))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(apns.provider_tokens) == 2


async def test_provider_token_refused_twice_is_retry(
    signing_key: SigningKey, clock: ManualClock
) -> None:
    """When even a fresh token is called expired (clocks apart), the push is RETRY."""
    server = ApnsServer(
        team_id=TEAM_ID,
        key_id=KEY_ID,
        public_key=signing_key.public_key,
        topics={TOPIC},
        clock=ManualClock(clock.now() + 2 * 3600),
    )
    async with server:
        p = make_provider(server, signing_key, clock)
        try:
            result = await p.send(target(), ALERT)
        finally:
            await p.close()
    assert (result.outcome, result.status, result.reason) == (
        Outcome.RETRY,
        403,
        "ExpiredProviderToken",
    )
    assert server.requests == 2


# --- transport ----------------------------------------------------------------------------


async def test_twenty_concurrent_sends_share_one_http2_connection(
    apns: ApnsServer, provider: ApnsProvider
) -> None:
    """20 concurrent pushes are all SENT as streams of a single HTTP/2 connection."""
    tokens = [f"{i:064x}" for i in range(20)]
    results = await asyncio.gather(*(provider.send(target(t), ALERT) for t in tokens))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sorted(n.device_token for n in apns.accepted) == sorted(tokens)
    assert len({n.connection for n in apns.accepted}) == 1


async def test_timeout_is_retry_and_the_provider_keeps_working(
    apns: ApnsServer, signing_key: SigningKey, clock: ManualClock
) -> None:
    """No answer within timeout_s: RETRY "timeout", quickly; the next send goes through."""
    apns.script(DEVICE, Hang(10))
    p = make_provider(apns, signing_key, clock, timeout_s=0.3)
    try:
        started = time.monotonic()
        result = await p.send(target(), ALERT)
        elapsed = time.monotonic() - started
        assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, None, "timeout")
        assert elapsed < 2.0
        assert (await p.send(target("b2" * 32), ALERT)).outcome is Outcome.SENT
    finally:
        await p.close()


async def test_unanswered_stream_times_out_on_a_busy_connection(
    apns: ApnsServer, signing_key: SigningKey, clock: ManualClock
) -> None:
    """A stream APNs never answers times out even while other streams keep the connection busy."""
    apns.script(DEVICE, Hang(10))
    p = make_provider(apns, signing_key, clock, timeout_s=0.5)
    try:
        hung = asyncio.create_task(p.send(target(), ALERT))
        others = 0
        while not hung.done():
            assert (await p.send(target("c3" * 32), ALERT)).outcome is Outcome.SENT
            others += 1
        assert hung.result().reason == "timeout"
        assert others > 5
    finally:
        await p.close()


async def test_nothing_listening_is_retry_unreachable(
    signing_key: SigningKey, clock: ManualClock
) -> None:
    """Connection refused: RETRY "unreachable"."""
    url = f"https://127.0.0.1:{free_port()}"
    p = ApnsProvider(TEAM_ID, KEY_ID, signing_key.pem, TOPIC, url, timeout_s=5.0, clock=clock)
    try:
        result = await p.send(target(), ALERT)
    finally:
        await p.close()
    assert (result.outcome, result.status, result.reason) == (Outcome.RETRY, None, "unreachable")


async def test_local_apns_speaks_only_http2(apns: ApnsServer) -> None:
    """The stand-in refuses HTTP/1.1, as APNs does."""
    async with httpx.AsyncClient(verify=apns.client_ssl_context()) as client:
        response = await client.post(f"{apns.origin}/3/device/{DEVICE}", content=b"{}")
    assert response.status_code == 505
    assert apns.accepted == []


def test_signing_key_must_be_p256() -> None:
    """An RSA key is refused at construction: a configuration error, found at startup."""
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        .decode()
    )
    with pytest.raises(ValueError, match="P-256"):
        ApnsProvider(TEAM_ID, KEY_ID, pem, TOPIC)


# --- the stand-in refuses what APNs refuses -----------------------------------------------


async def raw_post(
    apns: ApnsServer, headers: dict[str, str], body: bytes = b'{"aps":{}}'
) -> tuple[int, str]:
    """POST to the local APNs without ApnsProvider: (status, reason)."""
    context = apns.client_ssl_context()
    async with httpx.AsyncClient(http1=False, http2=True, verify=context) as client:
        response = await client.post(
            f"{apns.origin}/3/device/{DEVICE}", headers=headers, content=body
        )
    return response.status_code, response.json().get("reason", "") if response.content else ""


def bearer(key: SigningKey, iat: float, *, team_id: str = TEAM_ID) -> str:
    token = jwt.encode(
        {"iss": team_id, "iat": int(iat)}, key.pem, algorithm="ES256", headers={"kid": KEY_ID}
    )
    return f"bearer {token}"


@pytest.mark.parametrize(
    ("age_s", "team_id", "expected"),
    [
        (3601, TEAM_ID, (403, "ExpiredProviderToken")),
        (10, "OTHERTEAM1", (403, "InvalidProviderToken")),
        (10, TEAM_ID, (200, "")),
    ],
)
async def test_local_apns_checks_the_provider_token(
    apns: ApnsServer,
    signing_key: SigningKey,
    clock: ManualClock,
    age_s: float,
    team_id: str,
    expected: tuple[int, str],
) -> None:
    """The stand-in refuses tokens over an hour old or of another team."""
    headers = {
        "authorization": bearer(signing_key, clock.now() - age_s, team_id=team_id),
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
    }
    assert await raw_post(apns, headers) == expected


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"apns-push-type": "alert"}, "MissingTopic"),
        ({"apns-topic": TOPIC}, "InvalidPushType"),
        (
            {"apns-topic": TOPIC, "apns-push-type": "background", "apns-priority": "10"},
            "BadPriority",
        ),
        (
            {"apns-topic": TOPIC, "apns-push-type": "alert", "apns-collapse-id": "x" * 65},
            "BadCollapseId",
        ),
    ],
)
async def test_local_apns_checks_the_headers(
    apns: ApnsServer,
    signing_key: SigningKey,
    clock: ManualClock,
    headers: dict[str, str],
    reason: str,
) -> None:
    """The stand-in answers 400 with Apple's reason for a missing or bad apns-* header."""
    headers = {"authorization": bearer(signing_key, clock.now()), **headers}
    assert await raw_post(apns, headers) == (400, reason)
