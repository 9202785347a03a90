"""The event bus between services: subjects carry bytes, subscribers get callbacks.

`InProcessBus` serves the embedded default (one process); `chatmesh_common.nats_bus.NatsBus` is
the cluster implementation behind the same interface. Callbacks are plain functions, called in
publish order; they must not block (hand the payload to a queue), so one slow subscriber never
holds up the others.

Two kinds of publishing:
* `publish`: live fanout, at most once. A subscriber that was disconnected misses what was sent
  meanwhile; `on_reconnect` tells it when to catch up from the store.
* `publish_durable`: the event log for later consumers (push, search). It returns only once the
  event is stored (JetStream's ack) and raises otherwise; `msg_id` makes a repeat harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]

_DURABLE_IDS_KEPT = 100_000


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    async def publish(self, subject: str, payload: bytes) -> None:
        """Live fanout to the current subscribers of `subject`; never waits for them."""
        ...

    async def subscribe(self, subject: str, handler: Handler) -> Subscription: ...

    async def publish_durable(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Stores the event for durable consumers; returns after the store's ack, else raises.

        Publishing the same `msg_id` again (within the dedupe window) stores nothing new.
        """
        ...

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback` after the bus reconnected (live events may have been missed).

        Returns a function that removes the callback.
        """
        ...

    async def close(self) -> None: ...


class _InProcessSubscription:
    def __init__(self, bus: InProcessBus, subject: str, handler: Handler) -> None:
        self._bus = bus
        self._subject = subject
        self._handler = handler

    async def unsubscribe(self) -> None:
        self._bus._remove(self._subject, self._handler)


class InProcessBus:
    """Subjects matched exactly; delivery is synchronous and in publish order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        # Durable events: no later consumer exists in one process, so only ids are kept, to
        # honour the dedupe contract (bounded, oldest dropped first).
        self._durable_ids: dict[str, None] = {}
        self.durable_published = 0

    async def publish(self, subject: str, payload: bytes) -> None:
        for handler in self._handlers.get(subject, ()):
            try:
                handler(subject, payload)
            except Exception:
                log.exception("bus handler for %s failed", subject)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        # Copy on write, so a handler that unsubscribes during delivery is safe.
        self._handlers[subject] = [*self._handlers.get(subject, ()), handler]
        return _InProcessSubscription(self, subject, handler)

    def _remove(self, subject: str, handler: Handler) -> None:
        remaining = [h for h in self._handlers.get(subject, ()) if h is not handler]
        if remaining:
            self._handlers[subject] = remaining
        else:
            self._handlers.pop(subject, None)

    async def publish_durable(self, subject: str, payload: bytes, msg_id: str) -> None:
        if msg_id in self._durable_ids:
            return
        self._durable_ids[msg_id] = None
        if len(self._durable_ids) > _DURABLE_IDS_KEPT:
            del self._durable_ids[next(iter(self._durable_ids))]
        self.durable_published += 1
        await self.publish(subject, payload)

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        # One process never disconnects from itself.
        return lambda: None

    async def close(self) -> None:
        self._handlers.clear()
