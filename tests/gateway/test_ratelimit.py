"""Send rate limits and the bad-frame counter, on a hand-driven clock."""

from __future__ import annotations

import pytest

from chatmesh_common.clock import ManualClock
from gateway_ws.ratelimit import BadFrameCounter, RateLimiter, TokenBucket


def test_a_burst_is_allowed_then_limited() -> None:
    """40 sends at once pass; the 41st waits for the next token (1/20 s)."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic)
    assert all(limiter.acquire("alice") == 0.0 for _ in range(40))
    wait = limiter.acquire("alice")
    assert wait == pytest.approx(0.05)


def test_tokens_come_back_at_the_rate() -> None:
    """After a drained burst, one token returns every 1/rate seconds, up to the burst."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic)
    for _ in range(40):
        limiter.acquire("alice")
    clock.advance(0.05)
    assert limiter.acquire("alice") == 0.0
    assert limiter.acquire("alice") > 0
    clock.advance(3600)
    assert sum(limiter.acquire("alice") == 0.0 for _ in range(50)) == 40


def test_sustained_rate_is_twenty_per_second() -> None:
    """Over 10 s of steady sending, about 20/s plus the burst get through."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic)
    allowed = 0
    for _ in range(1000):  # 100 attempts a second for 10 s
        allowed += limiter.acquire("alice") == 0.0
        clock.advance(0.01)
    assert 40 + 200 - 2 <= allowed <= 40 + 200


def test_a_refused_send_does_not_take_a_token() -> None:
    """Retrying early does not push the wait further out."""
    bucket = TokenBucket(1, now=0.0)
    assert bucket.take(1.0, 1, now=0.0) == 0.0
    assert bucket.take(1.0, 1, now=0.5) == pytest.approx(0.5)
    assert bucket.take(1.0, 1, now=0.9) == pytest.approx(0.1)
    assert bucket.take(1.0, 1, now=1.0) == 0.0


def test_users_have_separate_buckets() -> None:
    """One user's burst does not limit another."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic)
    for _ in range(40):
        limiter.acquire("alice")
    assert limiter.acquire("alice") > 0
    assert limiter.acquire("bob") == 0.0


def test_prune_drops_only_refilled_buckets() -> None:
    """Buckets idle for burst/rate seconds are full again and can be forgotten."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic, prune_every_s=3600)
    limiter.acquire("idle")
    clock.advance(1.0)
    limiter.acquire("busy")
    clock.advance(1.5)  # idle: 2.5 s >= 2 s to refill; busy: 1.5 s
    assert limiter.prune() == 1
    assert len(limiter) == 1


def test_acquire_prunes_now_and_then() -> None:
    """Memory follows active users: stale buckets go without an explicit prune."""
    clock = ManualClock()
    limiter = RateLimiter(20.0, 40, clock.monotonic, prune_every_s=60)
    for user in range(100):
        limiter.acquire(f"u{user}")
    clock.advance(61)
    limiter.acquire("new")
    assert len(limiter) == 1


def test_bad_frames_below_the_limit_are_tolerated() -> None:
    """Nine bad frames within 10 s are not abuse."""
    counter = BadFrameCounter(10, 10.0)
    assert not any(counter.record(t * 0.1) for t in range(9))


def test_ten_bad_frames_within_ten_seconds_are_abuse() -> None:
    """The tenth bad frame inside the window trips the counter."""
    counter = BadFrameCounter(10, 10.0)
    results = [counter.record(t * 1.0) for t in range(10)]  # t = 0..9 s
    assert results == [False] * 9 + [True]


def test_bad_frames_spread_over_more_than_the_window_are_not_abuse() -> None:
    """One bad frame every 1.2 s never puts ten within 10 s."""
    counter = BadFrameCounter(10, 10.0)
    assert not any(counter.record(t * 1.2) for t in range(100))


def test_limits_must_be_positive() -> None:
    """Nonsense limits are refused at construction."""
    with pytest.raises(ValueError):
        RateLimiter(0, 40, lambda: 0.0)
    with pytest.raises(ValueError):
        BadFrameCounter(0, 10.0)
