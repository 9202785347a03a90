"""Web Push against a local push service that checks VAPID and decrypts every push the way a
browser would: what arrives equals what was sent, and every answer is classified."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chatmesh_common.clock import ManualClock, SystemClock
from notify_service.providers.base import Outcome, Platform, PushMessage, PushTarget
from notify_service.providers.http import H2Client
from notify_service.providers.vapid import (
    TOKEN_LIFETIME_S,
    application_server_key,
    audience_of,
    b64url_decode,
    b64url_encode,
    generate_vapid_keys,
    generate_vapid_private_key,
)
from notify_service.providers.webpush import (
    WebPushProvider,
    encrypt_payload,
    topic_for,
)
from tests.servers.ports import free_port
from tests.servers.webpush import LocalPushService

pytestmark = pytest.mark.timeout(20)

SUBJECT = "mailto:ops@chatmesh.example"
VAPID_PEM = generate_vapid_private_key()
APP_KEY = application_server_key(VAPID_PEM)


# RFC 8291 Appendix A: published test data (keys, salt, auth secret and the resulting body).
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYW"
    "AmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQ"
    "exSgSxsj_Qulcy4a-fN"
)


def _p256(d: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(d), "big"), ec.SECP256R1())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
async def service(clock: ManualClock) -> AsyncIterator[LocalPushService]:
    async with LocalPushService(clock) as server:
        yield server


ProviderFactory = Callable[..., WebPushProvider]


@pytest.fixture
async def make_provider(
    service: LocalPushService, clock: ManualClock
) -> AsyncIterator[ProviderFactory]:
    """Providers as in production (HTTPS only, HTTP/2) trusting the local service; their
    connections are closed before the service stops."""
    clients: list[H2Client] = []

    def make(*, timeout_s: float = 2.0, clock: ManualClock = clock) -> WebPushProvider:
        client = H2Client(verify=service.client_ssl_context())
        clients.append(client)
        return WebPushProvider(VAPID_PEM, SUBJECT, timeout_s=timeout_s, clock=clock, client=client)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def provider(make_provider: ProviderFactory) -> WebPushProvider:
    return make_provider()


async def test_push_decrypted_by_the_service_equals_what_was_sent(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """The browser side decrypts the aes128gcm body into the JSON of the message."""
    sub = service.subscribe(APP_KEY)
    message = PushMessage(
        title="Alice", body="héllo", data={"conversation_id": "c1", "seq": "7"}, badge=3
    )
    result = await provider.send(sub.target(), message)
    assert (result.outcome, result.status) == (Outcome.SENT, 201)
    [delivery] = sub.deliveries
    assert delivery.payload == {
        "title": "Alice",
        "body": "héllo",
        "data": {"conversation_id": "c1", "seq": "7"},
        "badge": 3,
    }
    assert (delivery.ttl, delivery.urgency, delivery.topic) == (86400, "high", None)
    assert delivery.http_version == "2"
    assert delivery.headers["content-type"] == "application/octet-stream"


def test_encryption_matches_the_rfc_8291_vector() -> None:
    """Given the RFC's sender key and salt, the body is the published one, byte for byte."""
    body = encrypt_payload(
        RFC_PLAINTEXT,
        {"p256dh": RFC_UA_PUBLIC, "auth": RFC_AUTH},
        salt=b64url_decode(RFC_SALT),
        sender_key=_p256(RFC_AS_PRIVATE),
    )
    assert b64url_encode(body) == RFC_BODY


async def test_service_decrypts_the_rfc_8291_vector(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """The local service, holding the RFC's browser keys, opens the published body."""
    sub = service.subscribe(private_key=_p256(RFC_UA_PRIVATE), auth=b64url_decode(RFC_AUTH))
    assert sub.p256dh == RFC_UA_PUBLIC
    headers, _ = provider.build_request(sub.target(), PushMessage())
    async with httpx.AsyncClient(verify=service.client_ssl_context()) as client:
        response = await client.post(sub.endpoint, content=b64url_decode(RFC_BODY), headers=headers)
    assert response.status_code == 201 and response.headers["location"]
    assert [d.plaintext for d in sub.deliveries] == [RFC_PLAINTEXT]


async def test_vapid_header_is_verified_and_names_the_origin(
    service: LocalPushService, provider: WebPushProvider, clock: ManualClock
) -> None:
    """The JWT is signed by the application server key, for this origin, 12 h ahead."""
    sub = service.subscribe(APP_KEY)
    assert (await provider.send(sub.target(), PushMessage(body="x"))).outcome is Outcome.SENT
    [delivery] = sub.deliveries
    assert delivery.claims["aud"] == service.origin
    assert delivery.claims["sub"] == SUBJECT
    assert delivery.claims["exp"] == int(clock.now()) + TOKEN_LIFETIME_S
    assert delivery.headers["authorization"].endswith(f", k={APP_KEY}")


async def test_forged_or_misdirected_vapid_is_refused(
    service: LocalPushService, provider: WebPushProvider, clock: ManualClock
) -> None:
    """A JWT signed by another key under our k, or made for another origin, gets 401."""
    sub = service.subscribe(APP_KEY)
    headers, body = provider.build_request(sub.target(), PushMessage(body="x"))
    forged = jwt.encode(
        {"aud": service.origin, "exp": int(clock.now()) + 3600, "sub": SUBJECT},
        _p256(RFC_AS_PRIVATE),
        algorithm="ES256",
    )
    elsewhere = provider.build_request(
        PushTarget(Platform.WEBPUSH, "https://127.0.0.1:1/push/x", sub.keys), PushMessage()
    )[0]["Authorization"]
    async with httpx.AsyncClient(verify=service.client_ssl_context()) as client:
        for authorization in (f"vapid t={forged}, k={APP_KEY}", elsewhere, "WebPush abc"):
            response = await client.post(
                sub.endpoint, content=body, headers={**headers, "Authorization": authorization}
            )
            assert response.status_code == 401
    assert [r for _, r in sub.refused][1:] == [
        f"aud 'https://127.0.0.1:1' is not {service.origin!r}",
        "Authorization must use the vapid scheme",
    ]
    assert sub.refused[0][1].startswith("JWT refused")
    assert sub.deliveries == []


async def test_subscription_made_with_another_key_is_refused(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """A push signed by a different VAPID key than the subscription's is FAILED (403)."""
    sub = service.subscribe(application_server_key(generate_vapid_private_key()))
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert (result.outcome, result.status, result.reason) == (Outcome.FAILED, 403, "http 403")
    assert sub.deliveries == []


async def test_vapid_token_reused_per_audience_until_near_expiry(
    service: LocalPushService, provider: WebPushProvider, clock: ManualClock
) -> None:
    """One JWT per origin is cached; a new one is signed when less than an hour is left."""
    sub = service.subscribe(APP_KEY)
    for _ in range(2):
        await provider.send(sub.target(), PushMessage(body="x"))
    clock.advance(TOKEN_LIFETIME_S - 1800)
    await provider.send(sub.target(), PushMessage(body="x"))
    auths = [d.headers["authorization"] for d in sub.deliveries]
    assert auths[0] == auths[1] != auths[2]
    async with LocalPushService(clock) as other_origin:
        trust = service.client_ssl_context()
        trust.load_verify_locations(cadata=other_origin.certificate_pem)
        async with httpx.AsyncClient(http2=True, verify=trust) as client:
            both = WebPushProvider(VAPID_PEM, SUBJECT, clock=clock, client=H2Client(client=client))
            for target in (sub.target(), other_origin.subscribe(APP_KEY).target()):
                assert (await both.send(target, PushMessage())).outcome is Outcome.SENT
    [elsewhere] = next(iter(other_origin.subscriptions.values())).deliveries
    assert sub.deliveries[-1].headers["authorization"] != elsewhere.headers["authorization"]
    assert elsewhere.claims["aud"] == other_origin.origin


async def test_expired_jwt_is_refused_by_the_service(
    service: LocalPushService, make_provider: ProviderFactory, clock: ManualClock
) -> None:
    """A provider whose clock is behind signs an expired JWT: the service answers 401."""
    behind = ManualClock(clock.now() - TOKEN_LIFETIME_S - 60)
    provider = make_provider(clock=behind)
    sub = service.subscribe(APP_KEY)
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert (result.outcome, result.status) == (Outcome.FAILED, 401)
    assert sub.refused == [(401, "JWT expired")]


async def test_collapse_key_becomes_a_short_deterministic_topic(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """Topic: at most 32 URL-safe base64 characters, the same for the same key."""
    sub = service.subscribe(APP_KEY)
    key = "conversation:c1/with spaces & ünïcode, and well over thirty-two characters"
    message = PushMessage(body="x", collapse_key=key, high_priority=False, ttl_s=60)
    assert (await provider.send(sub.target(), message)).outcome is Outcome.SENT
    [delivery] = sub.deliveries
    assert delivery.topic == topic_for(key) == topic_for(key)
    assert delivery.topic is not None and len(delivery.topic) <= 32
    assert topic_for("c2") != topic_for("c1")
    assert (delivery.urgency, delivery.ttl) == ("normal", 60)
    assert delivery.payload["tag"] == key


async def test_silent_push_is_low_urgency(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """A silent push carries Urgency low and no alert text."""
    sub = service.subscribe(APP_KEY)
    await provider.send(sub.target(), PushMessage(data={"seq": "1"}, silent=True))
    [delivery] = sub.deliveries
    assert delivery.urgency == "low"
    assert delivery.payload == {"data": {"seq": "1"}, "silent": True}


async def test_tampered_payload_does_not_decrypt(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """One flipped ciphertext byte, or a body for another subscription, is refused (400)."""
    sub = service.subscribe(APP_KEY)
    other = service.subscribe(APP_KEY)
    headers, body = provider.build_request(sub.target(), PushMessage(body="secret"))
    tampered = body[:-5] + bytes([body[-5] ^ 1]) + body[-4:]
    wrong_keys = encrypt_payload(b'{"body":"secret"}', other.keys)
    async with httpx.AsyncClient(verify=service.client_ssl_context()) as client:
        for content in (tampered, wrong_keys):
            response = await client.post(sub.endpoint, content=content, headers=headers)
            assert response.status_code == 400
    assert sub.deliveries == []
    assert all(reason.startswith("decryption failed") for _, reason in sub.refused)
    response_ok = await provider.send(sub.target(), PushMessage(body="secret"))
    assert response_ok.outcome is Outcome.SENT


async def test_payload_over_4096_bytes_fails_without_sending(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """Too large after encryption: FAILED PayloadTooLarge, and nothing reaches the service."""
    sub = service.subscribe(APP_KEY)
    result = await provider.send(sub.target(), PushMessage(body="x" * 4000))
    assert (result.outcome, result.status, result.reason) == (
        Outcome.FAILED,
        None,
        "PayloadTooLarge",
    )
    assert sub.deliveries == [] and sub.refused == []
    fits = await provider.send(sub.target(), PushMessage(body="x" * 3900))
    assert fits.outcome is Outcome.SENT


async def test_expired_and_unknown_subscriptions_are_gone(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """410 for an expired subscription, 404 for an unknown one: both GONE."""
    expired = service.subscribe(APP_KEY)
    service.expire(expired)
    withdrawn = service.subscribe(APP_KEY)
    service.unsubscribe(withdrawn)
    results = [
        await provider.send(expired.target(), PushMessage(body="x")),
        await provider.send(withdrawn.target(), PushMessage(body="x")),
    ]
    assert [(r.outcome, r.status) for r in results] == [(Outcome.GONE, 410), (Outcome.GONE, 404)]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (202, Outcome.SENT),
        (400, Outcome.FAILED),
        (401, Outcome.FAILED),
        (403, Outcome.FAILED),
        (413, Outcome.FAILED),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
async def test_each_status_is_classified(
    service: LocalPushService, provider: WebPushProvider, status: int, outcome: Outcome
) -> None:
    """Scripted answers map to SENT, FAILED or RETRY."""
    sub = service.subscribe(APP_KEY)
    service.fail_next(sub, status)
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert (result.outcome, result.status) == (outcome, status)
    if status == 413:
        assert result.reason == "PayloadTooLarge"


async def test_429_retry_after_seconds(
    service: LocalPushService, provider: WebPushProvider
) -> None:
    """429 with Retry-After seconds: RETRY after that long."""
    sub = service.subscribe(APP_KEY)
    service.fail_next(sub, 429, retry_after="30")
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert (result.outcome, result.status, result.retry_after_s) == (Outcome.RETRY, 429, 30.0)


async def test_503_retry_after_http_date(
    service: LocalPushService, provider: WebPushProvider, clock: ManualClock
) -> None:
    """Retry-After as an HTTP date: seconds from the provider's clock."""
    sub = service.subscribe(APP_KEY)
    service.fail_next(sub, 503, retry_after=formatdate(int(clock.now()) + 120, usegmt=True))
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert result.outcome is Outcome.RETRY
    assert result.retry_after_s == pytest.approx(120, abs=1)


async def test_500_n_times_then_sent(service: LocalPushService, provider: WebPushProvider) -> None:
    """A service failing twice then recovering: RETRY, RETRY, SENT."""
    sub = service.subscribe(APP_KEY)
    service.fail_next(sub, 500, times=2)
    results = [await provider.send(sub.target(), PushMessage(body="x")) for _ in range(3)]
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.SENT]
    assert results[0].retry_after_s is None
    assert len(sub.deliveries) == 1


async def test_hanging_service_times_out_quickly(
    service: LocalPushService, make_provider: ProviderFactory
) -> None:
    """No answer within timeout_s: RETRY "timeout", well before the service lets go."""
    provider = make_provider(timeout_s=0.2)
    sub = service.subscribe(APP_KEY)
    service.hang(sub)
    started = time.monotonic()
    result = await provider.send(sub.target(), PushMessage(body="x"))
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - started < 1.5


async def test_refused_connection_is_retried(provider: WebPushProvider) -> None:
    """Nothing listening: RETRY with no status."""
    target = PushTarget(
        Platform.WEBPUSH,
        f"https://127.0.0.1:{free_port()}/push/x",
        {"p256dh": LocalPushService().subscribe().p256dh, "auth": "AAAAAAAAAAAAAAAAAAAAAA"},
    )
    result = await provider.send(target, PushMessage(body="x"))
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert result.reason == "unreachable"


async def test_bad_subscriptions_fail_without_sending(provider: WebPushProvider) -> None:
    """Missing or malformed keys, or a non-http endpoint: FAILED before any request."""
    service = LocalPushService()
    good = service.subscribe()
    bad = [
        PushTarget(Platform.WEBPUSH, "https://127.0.0.1:1/push/a", {"p256dh": good.p256dh}),
        PushTarget(
            Platform.WEBPUSH, "https://127.0.0.1:1/p", {"p256dh": "AAAA", "auth": good.auth}
        ),
        PushTarget(Platform.WEBPUSH, "ftp://example.com/x", good.keys),
    ]
    results = [await provider.send(t, PushMessage(body="x")) for t in bad]
    assert [r.reason for r in results] == ["InvalidSubscription"] * 3
    assert {r.outcome for r in results} == {Outcome.FAILED}


async def test_plain_http_only_when_allowed(clock: ManualClock) -> None:
    """require_https=False reaches a plain-HTTP service (HTTP/1.1) and is otherwise the same."""
    async with LocalPushService(clock, tls=False) as plain:
        sub = plain.subscribe(APP_KEY)
        provider = WebPushProvider(VAPID_PEM, SUBJECT, clock=clock, require_https=False)
        result = await provider.send(sub.target(), PushMessage(body="x"))
        await provider.close()
    assert result.outcome is Outcome.SENT
    assert [(d.payload, d.http_version) for d in sub.deliveries] == [({"body": "x"}, "1.1")]


async def test_https_is_required_by_default() -> None:
    """A production provider refuses a plain http endpoint."""
    provider = WebPushProvider(VAPID_PEM, SUBJECT, clock=SystemClock())
    sub = LocalPushService().subscribe()
    result = await provider.send(
        PushTarget(Platform.WEBPUSH, "http://push.example/x", sub.keys), PushMessage(body="x")
    )
    await provider.close()
    assert (result.outcome, result.reason) == (Outcome.FAILED, "InvalidSubscription")


def test_vapid_helpers() -> None:
    """The application server key is the 65-byte point; audiences drop default ports."""
    assert len(APP_KEY) == 87 and b64url_decode(APP_KEY)[0] == 4
    pem, public = generate_vapid_keys()
    assert application_server_key(pem) == public != APP_KEY
    assert (
        audience_of("https://fcm.googleapis.com:443/fcm/send/abc") == "https://fcm.googleapis.com"
    )
    assert audience_of("http://127.0.0.1:8080/push/x") == "http://127.0.0.1:8080"
    with pytest.raises(ValueError, match="subject"):
        WebPushProvider(VAPID_PEM, "ops@example.com")
    with pytest.raises(ValueError, match="vapid private key"):
        WebPushProvider("not a key", SUBJECT)
