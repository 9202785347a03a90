"""Limits the gateway enforces itself: sends per user and bad frames per socket. Pure code.

Both take the time as an argument or from an injected monotonic clock, so tests move time by hand.
The token buckets are chatmesh_common.ratelimit's (presence's typing limit uses them too).
"""

from __future__ import annotations

from collections import deque

from chatmesh_common.ratelimit import RateLimiter as RateLimiter
from chatmesh_common.ratelimit import TokenBucket as TokenBucket


class BadFrameCounter:
    """Counts a socket's bad frames; `limit` of them within `window_s` seconds is abuse.

    Created on a socket's first bad frame, so well-behaved sockets carry none.
    """

    __slots__ = ("_limit", "_times", "_window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be at least 1 and window_s positive")
        self._limit = limit
        self._window_s = window_s
        # The times of the last `limit` bad frames, oldest first.
        self._times: deque[float] = deque(maxlen=limit)

    def record(self, now: float) -> bool:
        """Records one bad frame at `now`; True when that makes `limit` within the window."""
        self._times.append(now)
        return len(self._times) == self._limit and now - self._times[0] < self._window_s
