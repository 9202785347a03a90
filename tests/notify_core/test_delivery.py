"""Delivery through a failing provider: retries with backoff and Retry-After, dead letters listed
and replayed over gRPC, gone targets pruned, and one failing target never holding up others."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import grpc
import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from notify_service.providers.base import Outcome, PushResult

from .support import Harness, start_harness

pytestmark = pytest.mark.timeout(30)


def _gaps(harness: Harness, token: str) -> list[float]:
    times = [t for target, t in harness.provider.calls if target.token == token]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_retries_back_off_and_honour_retry_after(harness: Harness) -> None:
    """A RETRY is tried again after the backoff, or after Retry-After when that is longer."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail(
        "tok-bob",
        PushResult(Outcome.RETRY, status=503, reason="http 503"),
        PushResult(Outcome.RETRY, status=429, reason="http 429", retry_after_s=0.6),
    )
    conversation = await alice.direct(bob)
    await harness.send(alice, conversation, "hello")
    (push,) = await harness.provider.wait_for("tok-bob")
    assert push.body == "hello"
    first, second = _gaps(harness, "tok-bob")
    # Base 0.05 s: the first wait lies in [0.025, 0.05]; the second honours Retry-After.
    assert 0.02 <= first < 0.5
    assert second >= 0.6


async def test_every_try_of_a_push_carries_its_id(harness: Harness) -> None:
    """Retries of one push carry one push_id (a UUID); the next message's push has another."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail("tok-bob", PushResult(Outcome.RETRY, status=503, reason="http 503"))
    conversation = await alice.direct(bob)
    await harness.send(alice, conversation, "one")
    await harness.provider.wait_for("tok-bob")
    await harness.send(alice, conversation, "two")
    await harness.provider.wait_for("tok-bob", count=2)
    ids = [m.push_id for t, m in harness.provider.tried if t.token == "tok-bob"]
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2]
    assert all(uuid.UUID(i).version == 5 for i in ids)


async def test_last_failure_is_dead_lettered_listed_and_replayed(harness: Harness) -> None:
    """After max_attempts the push becomes a dead letter that operators list and replay."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail(
        "tok-bob", *[PushResult(Outcome.RETRY, status=500, reason="http 500")] * 3
    )
    conversation = await alice.direct(bob)
    sent = await harness.send(alice, conversation, "hello")
    await harness.settle(0.6)
    assert harness.provider.to("tok-bob") == []
    listed = await harness.stub.ListDeadLetters(
        pb.ListDeadLettersRequest(), metadata=harness.admin_md
    )
    (dead,) = listed.dead_letters
    assert (dead.user_id, dead.device_id, dead.conversation_id, dead.seq) == (
        "bob", "default", conversation, sent.message.seq,
    )  # fmt: skip
    assert (dead.attempts, dead.last_error, dead.pending) == (3, "http 500", True)
    assert dead.platform == pb.PLATFORM_APNS
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.ListDeadLetters(pb.ListDeadLettersRequest(), metadata=bob.md)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    replayed = await harness.stub.ReplayDeadLetter(
        pb.ReplayDeadLetterRequest(dead_letter_id=dead.dead_letter_id), metadata=harness.admin_md
    )
    assert not replayed.dead_letter.pending
    (push,) = await harness.provider.wait_for("tok-bob")
    assert push.data["seq"] == str(sent.message.seq)


async def test_failed_outcome_dead_letters_at_once(harness: Harness) -> None:
    """A FAILED outcome (retrying will not help) is dead-lettered after one try."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail("tok-bob", PushResult(Outcome.FAILED, status=413, reason="too large"))
    conversation = await alice.direct(bob)
    await harness.send(alice, conversation, "hello")
    await harness.settle()
    listed = await harness.stub.ListDeadLetters(
        pb.ListDeadLettersRequest(user_id="bob"), metadata=harness.admin_md
    )
    assert [(d.attempts, d.last_error) for d in listed.dead_letters] == [(1, "too large")]


async def test_gone_target_is_removed(harness: Harness) -> None:
    """A GONE result removes the device's target; later messages push nothing to it."""
    alice, bob = harness.client("alice"), harness.client("bob")
    await harness.register(bob, "tok-bob")
    harness.provider.fail("tok-bob", PushResult(Outcome.GONE, status=410, reason="Unregistered"))
    conversation = await alice.direct(bob)
    await harness.send(alice, conversation, "hello")
    await harness.settle()
    devices = await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=bob.md)
    assert list(devices.devices) == []
    await harness.send(alice, conversation, "again")
    await harness.settle()
    assert len(harness.provider.calls) == 1


async def test_a_failing_target_does_not_hold_up_others(harness: Harness) -> None:
    """While one device's push waits for its retry, other devices get theirs; the waiting
    device then gets one push standing for both messages."""
    alice, bob, carol = harness.client("alice"), harness.client("bob"), harness.client("carol")
    await harness.register(bob, "tok-bob")
    await harness.register(carol, "tok-carol")
    harness.provider.fail(
        "tok-bob", PushResult(Outcome.RETRY, status=503, reason="http 503", retry_after_s=2.0)
    )
    conversation = await alice.group(bob, carol)
    await harness.send(alice, conversation, "one")
    await harness.send(alice, conversation, "two")
    await harness.provider.wait_for("tok-carol", 2)
    assert harness.provider.to("tok-bob") == []
    (push,) = await harness.provider.wait_for("tok-bob")
    assert (push.body, push.data["count"]) == ("alice: two", "2")


async def test_a_hanging_target_does_not_hold_the_delivery_slots(tmp_path: Path) -> None:
    """With one slot, a push whose endpoint hangs (until a 10 s timeout) gives its slot back
    after slow_after_s: another member's push goes out in well under the hang."""
    async for harness in start_harness(tmp_path, concurrency=1, slow_after_s=0.2):
        alice, bob, carol = (harness.client(u) for u in ("alice", "bob", "carol"))
        await harness.register(bob, "tok-bob")
        await harness.register(carol, "tok-carol")
        harness.provider.hang["tok-bob"] = 10.0
        conversation = await alice.group(bob, carol)
        await harness.send(alice, conversation, "one")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await harness.provider.wait_for("tok-carol")
        assert loop.time() - started < 5.0
        assert harness.provider.to("tok-bob") == []
