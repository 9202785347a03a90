"""Each push attempt logs one structured line with ids and never message text; metrics count
per provider and measure push lag."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from chatmesh_common.logs import FIELDS
from notify_service.providers.base import Outcome, PushResult

from .support import Harness

pytestmark = pytest.mark.timeout(30)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_attempts_are_logged_with_ids_and_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A retried then sent push logs two attempt lines and moves the provider's counters."""
    caplog.set_level(logging.INFO, logger="notify_service.delivery")
    sent_before = _sample("chatmesh_notify_pushes_total", provider="apns", result="sent")
    retried_before = _sample("chatmesh_notify_pushes_total", provider="apns", result="retried")
    lag_before = _sample("chatmesh_notify_push_lag_seconds_count", provider="apns")
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail("tok-bob", PushResult(Outcome.RETRY, status=503, reason="http 503"))
    conversation = await alice.direct(bob)
    sent = await harness.send(alice, conversation, "top secret words")
    await harness.provider.wait_for("tok-bob")
    attempts = [r for r in caplog.records if r.getMessage() == "push attempt"]
    assert [getattr(r, FIELDS)["outcome"] for r in attempts] == ["retry", "sent"]
    line = getattr(attempts[0], FIELDS)
    assert (line["user"], line["device"], line["conversation"], line["seq"]) == (
        "bob", "default", conversation, sent.message.seq,
    )  # fmt: skip
    assert (line["provider"], line["attempt"], line["reason"]) == ("apns", 1, "http 503")
    assert all("secret" not in str(getattr(r, FIELDS)) for r in attempts)
    assert (
        _sample("chatmesh_notify_pushes_total", provider="apns", result="sent") == sent_before + 1
    )
    assert (
        _sample("chatmesh_notify_pushes_total", provider="apns", result="retried")
        == retried_before + 1
    )
    assert _sample("chatmesh_notify_push_lag_seconds_count", provider="apns") == lag_before + 1
    assert _sample("chatmesh_notify_push_failures_total", provider="apns", reason="http 503") >= 1
