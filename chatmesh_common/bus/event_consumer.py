"""A durable consumer of chat_service's event log, run as a background loop.

Each service that follows the log (search's indexer, media's attachment binder, push) gives a
handler of one decoded ConversationEvent; this loop fetches batches, decodes, calls the handler
and acks, or naks with a delay when the handler fails so the event comes back later. Delivery
is at least once: handlers are idempotent. An undecodable event is logged and acked (it would
never decode on a redelivery either).

With `lanes` > 1 a batch is handled by conversation: one conversation's events in log order,
up to `lanes` conversations at once, so a handler that waits on other services (push asks
chat and presence about every message) is not paid for one event at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from chatmesh.events.v1 import events_pb2

from .base import DEFAULT_ACK_WAIT_S, Bus, DurableConsumer, DurableMessage

log = logging.getLogger(__name__)

Handler = Callable[[events_pb2.ConversationEvent], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        bus: Bus,
        name: str,
        filters: Sequence[str],
        handler: Handler,
        *,
        batch: int = 100,
        retry_delay_s: float = 1.0,
        ack_wait_s: float = DEFAULT_ACK_WAIT_S,
        lanes: int = 1,
    ) -> None:
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._bus = bus
        self.name = name
        self._filters = tuple(filters)
        self._handler = handler
        self._batch = batch
        self._retry_delay_s = retry_delay_s
        # How long a fetched event may stay unacked (a crashed handler) before it comes again.
        self._ack_wait_s = ack_wait_s
        self._lanes = lanes
        self._consumer: DurableConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._running.set()

    async def _decoded(self, delivery: DurableMessage) -> events_pb2.ConversationEvent | None:
        try:
            return events_pb2.ConversationEvent.FromString(delivery.data)
        except Exception:
            log.warning("%s: undecodable event %s dropped", self.name, delivery.msg_id)
            await delivery.ack()
            return None

    async def _handle(self, delivery: DurableMessage, event: events_pb2.ConversationEvent) -> None:
        try:
            await self._handler(event)
        except Exception:
            log.exception("%s: event %s failed; retried", self.name, delivery.msg_id)
            await delivery.nak(self._retry_delay_s)
            return
        await delivery.ack()

    async def _handle_in_lanes(
        self, items: Sequence[tuple[DurableMessage, events_pb2.ConversationEvent]]
    ) -> None:
        by_conversation: dict[str, list[tuple[DurableMessage, events_pb2.ConversationEvent]]]
        by_conversation = {}
        for delivery, event in items:
            by_conversation.setdefault(event.conversation_id, []).append((delivery, event))
        free = asyncio.Semaphore(self._lanes)

        async def lane(queue: list[tuple[DurableMessage, events_pb2.ConversationEvent]]) -> None:
            async with free:
                for delivery, event in queue:
                    await self._handle(delivery, event)

        # A failed ack cancels the other lanes; what they had not acked comes again.
        async with asyncio.TaskGroup() as lanes:
            for queue in by_conversation.values():
                lanes.create_task(lane(queue))

    async def run_once(self, timeout_s: float = 1.0) -> int:
        """Handles one batch; how many deliveries it had."""
        if self._consumer is None:
            self._consumer = await self._bus.durable_consumer(
                self.name, self._filters, ack_wait_s=self._ack_wait_s
            )
        deliveries = await self._consumer.fetch(self._batch, timeout_s)
        items = []
        for delivery in deliveries:
            event = await self._decoded(delivery)
            if event is not None:
                items.append((delivery, event))
        if self._lanes == 1:
            for delivery, event in items:
                await self._handle(delivery, event)
        else:
            await self._handle_in_lanes(items)
        return len(deliveries)

    async def _loop(self) -> None:
        while True:
            await self._running.wait()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The bus is down or reconnecting: try again shortly, never die.
                log.exception("%s: fetching failed; retrying", self.name)
                await asyncio.sleep(self._retry_delay_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    def pause(self) -> None:
        """Stops fetching after the current batch (the consumer falls behind the log)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.close()
            self._consumer = None
