"""Per-user lookups that concurrent callers share: at most one call to the backend is in
flight; users asked for while it runs go together in the next one.

The push consumer asks presence who is online and chat for unread totals once per message, from
up to CHATMESH_NOTIFY_CONSUMER_LANES conversations at once. A lone caller is answered by a call
of its own at once; when the consumer falls behind, many lanes ask at the same time and share
one call, so each message costs less exactly when the consumer needs to catch up (the way a
group commit shares one write between concurrent transactions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")

# Answers for the users asked: absent ones have no value (offline, or no unread total).
Lookup = Callable[[Sequence[str]], Awaitable[Mapping[str, V]]]


class SharedLookup(Generic[V]):
    def __init__(self, lookup: Lookup[V]) -> None:
        self._lookup = lookup
        # Users waiting for the next call, and the future it will settle.
        self._wanted: dict[str, None] = {}
        self._next: asyncio.Future[Mapping[str, V]] | None = None
        self._running: asyncio.Task[None] | None = None

    async def ask(self, user_ids: Sequence[str]) -> dict[str, V]:
        """The values of `user_ids` (absent: none), from a call that may also answer others."""
        if not user_ids:
            return {}
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        future = self._next
        self._wanted.update(dict.fromkeys(user_ids))
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        # Shielded: one caller cancelled (its event's lane stopped) must not cancel the call
        # the others wait for.
        answers = await asyncio.shield(future)
        return {u: answers[u] for u in user_ids if u in answers}

    async def _run(self) -> None:
        future: asyncio.Future[Mapping[str, V]] | None = None
        try:
            while self._next is not None:
                future, self._next = self._next, None
                wanted, self._wanted = list(self._wanted), {}
                try:
                    future.set_result(await self._lookup(wanted))
                except Exception as exc:  # every caller of this round sees the failure
                    future.set_exception(exc)
                    # Retrieved here too, so a round nobody awaits any more logs nothing.
                    future.exception()
        finally:
            # Stopped (cancelled): no caller waits for ever.
            for left in (future, self._next):
                if left is not None and not left.done():
                    left.cancel()
            self._next = None
            self._wanted = {}
            self._running = None
