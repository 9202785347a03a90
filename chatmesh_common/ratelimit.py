"""The token bucket, and a bucket per key (sends per user, typing per device). Pure code.

Time is an argument or comes from an injected monotonic clock, so tests move it by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class TokenBucket:
    """`rate` tokens a second up to `burst`; each allowed action takes one token."""

    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = float(burst)
        self.updated = now

    def take(self, rate: float, burst: float, now: float, cost: float = 1.0) -> float:
        """Takes `cost` tokens (at most `burst`): 0.0 when allowed, else the seconds until they
        are available."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(float(burst), self.tokens + elapsed * rate)
            self.updated = now
        cost = min(cost, float(burst))
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / rate


class RateLimiter:
    """One token bucket per key (a user id, a (user, device) pair).

    Buckets of keys idle long enough to be full again are dropped now and then, so memory follows
    the number of recently active keys, not every key ever seen.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        monotonic: Callable[[], float],
        prune_every_s: float = 60.0,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._monotonic = monotonic
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._prune_every_s = prune_every_s
        self._last_prune = monotonic()

    def acquire(self, key: Hashable, cost: float = 1.0) -> float:
        """0.0 when `key` may act now (`cost` tokens are taken), else the seconds to wait."""
        now = self._monotonic()
        if now - self._last_prune >= self._prune_every_s:
            self.prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._burst, now)
        return bucket.take(self._rate, self._burst, now, cost)

    def prune(self, now: float | None = None) -> int:
        """Drops buckets that have refilled (they equal fresh ones); returns how many."""
        now = self._monotonic() if now is None else now
        self._last_prune = now
        refill_s = self._burst / self._rate
        stale = [key for key, b in self._buckets.items() if now - b.updated >= refill_s]
        for key in stale:
            del self._buckets[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._buckets)
