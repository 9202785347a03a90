"""The event bus between services: subjects carry bytes, subscribers get callbacks.

`InProcessBus` serves the embedded default (one process); the cluster implementation speaks
NATS behind the same interface. Callbacks are plain functions, called in publish order; they must
not block (hand the payload to a queue), so one slow subscriber never holds up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    async def publish(self, subject: str, payload: bytes) -> None: ...

    async def subscribe(self, subject: str, handler: Handler) -> Subscription: ...

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

    async def close(self) -> None:
        self._handlers.clear()
