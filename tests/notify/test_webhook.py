"""Signed webhooks against a local receiver that verifies every signature: what arrives is the
JSON that was sent, a wrong secret or an old timestamp does not verify, answers are classified."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest

from chatmesh_common.clock import ManualClock
from notify_service.providers.base import Outcome, Platform, PushMessage, PushTarget
from notify_service.providers.webhook import WebhookProvider, sign, verify_signature
from tests.servers.ports import free_port
from tests.servers.webhook import LocalWebhookReceiver

pytestmark = pytest.mark.timeout(20)

SECRET = "whsec-test-0123456789"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
async def receiver(clock: ManualClock) -> AsyncIterator[LocalWebhookReceiver]:
    async with LocalWebhookReceiver(SECRET, clock) as server:
        yield server


@pytest.fixture
async def provider(clock: ManualClock) -> AsyncIterator[WebhookProvider]:
    built = WebhookProvider(SECRET, timeout_s=2.0, clock=clock)
    try:
        yield built
    finally:
        await built.close()


async def test_signed_json_arrives_and_verifies(
    receiver: LocalWebhookReceiver, provider: WebhookProvider, clock: ManualClock
) -> None:
    """The receiver verifies the signature and gets every documented key."""
    message = PushMessage(
        title="Alice", body="hi", data={"conversation_id": "c1"}, badge=2, collapse_key="c1"
    )
    result = await provider.send(receiver.target(), message)
    assert (result.outcome, result.status) == (Outcome.SENT, 204)
    [got] = receiver.received
    assert got.payload == {
        "type": "notification",
        "title": "Alice",
        "body": "hi",
        "data": {"conversation_id": "c1"},
        "badge": 2,
        "collapse_key": "c1",
        "silent": False,
        "sent_at": int(clock.now()),
    }
    assert got.headers["content-type"] == "application/json"
    t = int(clock.now())
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert got.headers["chatmesh-signature"] == f"t={t},v1={expected}"


async def test_a_repeat_carries_the_same_idempotency_key_and_the_receiver_drops_it(
    receiver: LocalWebhookReceiver, provider: WebhookProvider
) -> None:
    """Two tries of one push (the same push_id) show once at a receiver that keeps its keys; a
    push without an id carries no key."""
    message = PushMessage(title="Alice", body="hi", push_id="3f2c5f8e-0000-5000-8000-000000000001")
    for _ in range(2):
        result = await provider.send(receiver.target(), message)
        assert (result.outcome, result.status) == (Outcome.SENT, 204)
    [got] = receiver.received
    assert got.headers["idempotency-key"] == message.push_id
    assert receiver.repeats == {message.push_id: 1}
    await provider.send(receiver.target(), PushMessage(title="Alice", body="again"))
    assert "idempotency-key" not in receiver.received[-1].headers


async def test_receiver_with_another_secret_refuses(
    clock: ManualClock, provider: WebhookProvider
) -> None:
    """A receiver holding a different secret answers 401: FAILED, nothing recorded."""
    async with LocalWebhookReceiver("another-secret", clock) as other:
        result = await provider.send(other.target(), PushMessage(body="x"))
        assert (result.outcome, result.status) == (Outcome.FAILED, 401)
        assert other.received == [] and len(other.rejected) == 1


def test_verify_signature_rejects_wrong_secret_tampering_and_old_timestamps() -> None:
    """Only the right secret over the same bytes within the tolerance verifies."""
    now = 1_700_000_000
    body = json.dumps({"type": "notification"}).encode()
    header = sign(SECRET, body, now)
    assert verify_signature(SECRET, header, body, now=now + 10)
    assert verify_signature(SECRET.encode(), header, body, now=now)
    assert not verify_signature("wrong", header, body, now=now)
    assert not verify_signature(SECRET, header, body + b" ", now=now)
    assert not verify_signature(SECRET, header, body, now=now + 301)
    assert not verify_signature(SECRET, header, body, now=now - 301)
    assert verify_signature(SECRET, header, body, now=now + 900, tolerance_s=1000)


def test_verify_signature_handles_rotation_and_malformed_headers() -> None:
    """Several v1 values: one match suffices; malformed headers are simply False."""
    now = 1_700_000_000
    body = b"{}"
    good = sign(SECRET, body, now)
    old = sign("old-secret", body, now).rpartition(",")[2]
    assert verify_signature(SECRET, f"{good},{old}", body, now=now)
    assert verify_signature("old-secret", f"{good},{old}", body, now=now)
    malformed = ["", "v1=abc", f"t={now}", "t=abc,v1=00", "t=²,v1=00", f"t={now},t={now},v1=00"]
    for header in [None, "x", *malformed]:
        assert not verify_signature(SECRET, header, body, now=now)


async def test_stale_request_is_refused_by_the_receiver(
    receiver: LocalWebhookReceiver, clock: ManualClock
) -> None:
    """A sender whose clock is ten minutes behind is refused (the replay window)."""
    behind = WebhookProvider(SECRET, timeout_s=2.0, clock=ManualClock(clock.now() - 600))
    result = await behind.send(receiver.target(), PushMessage(body="x"))
    await behind.close()
    assert (result.outcome, result.status) == (Outcome.FAILED, 401)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (400, Outcome.FAILED),
        (404, Outcome.FAILED),
        (410, Outcome.GONE),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
    ],
)
async def test_each_status_is_classified(
    receiver: LocalWebhookReceiver, provider: WebhookProvider, status: int, outcome: Outcome
) -> None:
    """Scripted answers map to SENT, FAILED, GONE or RETRY."""
    receiver.fail_next(status)
    result = await provider.send(receiver.target(), PushMessage(body="x"))
    assert (result.outcome, result.status) == (outcome, status)


async def test_gone_target(receiver: LocalWebhookReceiver, provider: WebhookProvider) -> None:
    """A receiver answering 410 for a path: GONE every time."""
    receiver.gone("/old")
    result = await provider.send(receiver.target("/old"), PushMessage(body="x"))
    assert (result.outcome, result.reason) == (Outcome.GONE, "http 410")


async def test_retry_after_seconds_and_http_date(
    receiver: LocalWebhookReceiver, provider: WebhookProvider, clock: ManualClock
) -> None:
    """429 with seconds and 503 with an HTTP date both give retry_after_s."""
    receiver.fail_next(429, retry_after="7")
    receiver.fail_next(503, retry_after=formatdate(int(clock.now()) + 90, usegmt=True))
    first = await provider.send(receiver.target(), PushMessage(body="x"))
    second = await provider.send(receiver.target(), PushMessage(body="x"))
    assert (first.outcome, first.retry_after_s) == (Outcome.RETRY, 7.0)
    assert second.outcome is Outcome.RETRY
    assert second.retry_after_s == pytest.approx(90, abs=1)


async def test_hanging_receiver_times_out_quickly(
    receiver: LocalWebhookReceiver, clock: ManualClock
) -> None:
    """No answer within timeout_s: RETRY "timeout"."""
    provider = WebhookProvider(SECRET, timeout_s=0.2, clock=clock)
    receiver.hang()
    started = time.monotonic()
    result = await provider.send(receiver.target(), PushMessage(body="x"))
    await provider.close()
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout")
    assert time.monotonic() - started < 1.5


async def test_refused_connection_is_retried(provider: WebhookProvider) -> None:
    """Nothing listening: RETRY with no status."""
    target = PushTarget(Platform.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook")
    result = await provider.send(target, PushMessage(body="x"))
    assert (result.outcome, result.status) == (Outcome.RETRY, None)


async def test_invalid_urls_fail_without_sending(provider: WebhookProvider) -> None:
    """Only absolute http(s) URLs without credentials are accepted."""
    urls = ["ftp://example.com/x", "/relative", "https://user:pw@example.com/x", "not a url"]
    results = [await provider.send(PushTarget(Platform.WEBHOOK, u), PushMessage()) for u in urls]
    assert {(r.outcome, r.reason) for r in results} == {(Outcome.FAILED, "InvalidURL")}


def test_empty_secret_is_refused() -> None:
    """A provider cannot be built without a secret."""
    with pytest.raises(ValueError, match="secret"):
        WebhookProvider("")
