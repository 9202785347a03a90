"""The embedded bus: one process, live delivery by function call, a durable log in SQLite.

Live: handlers of exact subjects sit in a dict (the fanout hot path: one lookup per publish);
filters with wildcards are matched per publish (`wildcards.tokens_match`), as NATS would.
Delivery is synchronous and in publish order. Durable: `chatmesh_common.bus.durable_log`, in a
file when `durable_path` is given (so `chatmesh dev` keeps its log and consumer positions across
restarts), else in memory. Live delivery stays within the process; a process that only consumes
the log another one appends to (dev's consumer worker) opens it with `poll_s`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from chatmesh_common.clock import Clock

from .base import DEFAULT_ACK_WAIT_S, DurableConsumer, Handler, Subscription
from .durable_log import DurableLog
from .wildcards import check_durable_subject, check_filter, filter_tokens, tokens_match

log = logging.getLogger(__name__)


def _is_filter(subject: str) -> bool:
    return "*" in subject or ">" in subject


class _InProcessSubscription:
    def __init__(self, bus: InProcessBus, subject: str, handler: Handler) -> None:
        self._bus = bus
        self._subject = subject
        self._handler = handler

    async def unsubscribe(self) -> None:
        self._bus._remove(self._subject, self._handler)


class InProcessBus:
    """Live subjects and filters with NATS semantics; delivery is synchronous and in order."""

    def __init__(
        self,
        durable_path: Path | None = None,
        clock: Clock | None = None,
        *,
        poll_s: float | None = None,
    ) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        # Filter subscriptions: (tokens, subject, handler), in subscription order.
        self._filters: list[tuple[tuple[str, ...], str, Handler]] = []
        # poll_s: the file is shared with another process that appends (see durable_log).
        self._log = DurableLog(durable_path, clock, poll_s=poll_s)

    async def publish(self, subject: str, payload: bytes) -> None:
        for handler in self._handlers.get(subject, ()):
            self._call(handler, subject, payload)
        if self._filters:
            tokens = subject.split(".")
            for pattern, _subject, handler in self._filters:
                if tokens_match(pattern, tokens):
                    self._call(handler, subject, payload)

    @staticmethod
    def _call(handler: Handler, subject: str, payload: bytes) -> None:
        try:
            handler(subject, payload)
        except Exception:
            log.exception("bus handler for %s failed", subject)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        check_filter(subject)
        # Copy on write, so a handler that unsubscribes during delivery is safe.
        if _is_filter(subject):
            self._filters = [*self._filters, (filter_tokens(subject), subject, handler)]
        else:
            self._handlers[subject] = [*self._handlers.get(subject, ()), handler]
        return _InProcessSubscription(self, subject, handler)

    def _remove(self, subject: str, handler: Handler) -> None:
        if _is_filter(subject):
            self._filters = [f for f in self._filters if not (f[1] == subject and f[2] is handler)]
            return
        remaining = [h for h in self._handlers.get(subject, ()) if h is not handler]
        if remaining:
            self._handlers[subject] = remaining
        else:
            self._handlers.pop(subject, None)

    async def publish_durable(self, subject: str, payload: bytes, msg_id: str) -> None:
        if await self._log.append_grouped(check_durable_subject(subject), payload, msg_id):
            # As on NATS, where a JetStream publish also reaches core subscribers.
            await self.publish(subject, payload)

    async def durable_consumer(
        self,
        name: str,
        filter_subjects: str | Sequence[str],
        ack_wait_s: float = DEFAULT_ACK_WAIT_S,
    ) -> DurableConsumer:
        return self._log.consumer(name, filter_subjects, ack_wait_s)

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        # One process never disconnects from itself.
        return lambda: None

    async def close(self) -> None:
        self._handlers.clear()
        self._filters = []
        self._log.close()
