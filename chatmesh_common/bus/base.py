"""The bus between services: the protocols every implementation keeps.

Two kinds of traffic:

* live (`publish` / `subscribe`): at most once, to whoever subscribes now. Handlers are plain
  functions called in publish order; they must not block (hand the payload to a queue), so one
  slow subscriber never holds up the others. A subscriber that was disconnected misses what was
  sent meanwhile; `on_reconnect` tells it when to catch up from the store.
* durable (`publish_durable` / `durable_consumer`): the event log for later consumers (push,
  search). `publish_durable` returns once the event is stored and raises otherwise; its
  `msg_id` makes a repeat harmless. A durable consumer has a name and a subject filter, keeps its
  position across restarts, and gets each event at least once: a message not acked within the
  consumer's ack wait (or nak'ed) comes again, with a higher `delivery_count`.

Subjects and filters follow NATS on every bus (`chatmesh_common.bus.wildcards`); their names
come from `chatmesh_common.subjects`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

Handler = Callable[[str, bytes], None]

DEFAULT_ACK_WAIT_S = 30.0


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class DurableMessage(Protocol):
    """One delivery of a durable event. Ack it once it is handled, or nak it to retry; the
    first ack or nak of a delivery counts, later ones do nothing."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def msg_id(self) -> str:
        """The id it was published with (`publish_durable`)."""
        ...

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery, then one more for each redelivery."""
        ...

    async def ack(self) -> None:
        """Handled: this consumer never gets it again."""
        ...

    async def nak(self, delay_s: float = 0.0) -> None:
        """Not handled: deliver it again after `delay_s` (instead of after the ack wait)."""
        ...


class DurableConsumer(Protocol):
    """A named reader of the durable log; its position and unacked messages outlive it."""

    @property
    def name(self) -> str: ...

    async def fetch(self, batch: int = 100, timeout_s: float = 1.0) -> Sequence[DurableMessage]:
        """Up to `batch` messages in log order, redeliveries first.

        Waits up to `timeout_s` for the first one; an empty list when none came.
        """
        ...

    async def close(self) -> None:
        """Stops reading; unacked messages are redelivered after their ack wait."""
        ...


class Bus(Protocol):
    async def publish(self, subject: str, payload: bytes) -> None:
        """Live fanout to the current subscribers of `subject`; never waits for them."""
        ...

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        """`subject` may be a filter (`*` one token, `>` one or more trailing tokens)."""
        ...

    async def publish_durable(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Stores the event for durable consumers; returns after the store's ack, else raises.

        `subject` must lie under `chatmesh_common.subjects.EVENTS_SUBJECTS`. Publishing the same
        `msg_id` again (within the dedupe window) stores nothing new.
        """
        ...

    async def durable_consumer(
        self,
        name: str,
        filter_subjects: str | Sequence[str],
        ack_wait_s: float = DEFAULT_ACK_WAIT_S,
    ) -> DurableConsumer:
        """The consumer `name`, created on first use with the events of the whole log.

        Reopening a name resumes where it stopped; a new filter or ack wait replaces the old.
        """
        ...

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback` after the bus reconnected (live events may have been missed).

        Returns a function that removes the callback.
        """
        ...

    async def close(self) -> None: ...


def check_consumer_args(ack_wait_s: float) -> None:
    if not ack_wait_s > 0:
        raise ValueError(f"ack_wait_s must be positive, got {ack_wait_s}")


def check_fetch_args(batch: int, timeout_s: float) -> None:
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
