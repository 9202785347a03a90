"""The indexer: reads message created / edited / deleted events from the durable log
(chatmesh_common.subjects.SEARCH_FILTERS) into a search engine.

At-least-once delivery is harmless: documents are keyed by (conversation, seq) and an edit only
replaces an older version; a delete leaves a tombstone, so a redelivered create never brings the
message back. Membership events change nothing in the index: access is decided at query time.
The lag (now minus the newest handled event's time) is the `chatmesh_search_index_lag_seconds`
gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chatmesh.events.v1 import events_pb2
from prometheus_client import Counter, Gauge

from chatmesh_common.bus import Bus
from chatmesh_common.bus.base import DurableConsumer, DurableMessage
from chatmesh_common.clock import Clock
from chatmesh_common.subjects import SEARCH_FILTERS

from .engines.base import Document, SearchEngine

log = logging.getLogger(__name__)

INDEX_LAG = Gauge(
    "chatmesh_search_index_lag_seconds",
    "Seconds between the newest indexed event's occurrence and its indexing.",
)
INDEXED = Counter("chatmesh_search_indexed_total", "Durable events handled, by kind.", ["kind"])

CONSUMER_NAME = "search-indexer"


def document(event: events_pb2.ConversationEvent) -> Document | None:
    kind = event.WhichOneof("payload")
    if kind == "message_created":
        message = event.message_created.message
    elif kind == "message_edited":
        message = event.message_edited.message
    else:
        return None
    return Document(
        conversation_id=message.conversation_id,
        seq=message.seq,
        sender_id=message.sender_id,
        sent_at_ms=message.created_at.ToMilliseconds(),
        version=message.version,
        body=message.body,
    )


class Indexer:
    def __init__(self, bus: Bus, engine: SearchEngine, clock: Clock, *, batch: int = 100) -> None:
        self._bus = bus
        self._engine = engine
        self._clock = clock
        self._batch = batch
        self._consumer: DurableConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._running.set()

    async def handle(self, event: events_pb2.ConversationEvent) -> None:
        kind = event.WhichOneof("payload") or ""
        if kind == "message_deleted":
            message = event.message_deleted.message
            await self._engine.remove(message.conversation_id, message.seq)
        else:
            doc = document(event)
            if doc is not None and not (
                kind == "message_created" and event.message_created.message.deleted
            ):
                await self._engine.upsert(doc)
        INDEXED.labels(kind or "unknown").inc()
        if event.HasField("occurred_at"):
            INDEX_LAG.set(max(0.0, self._clock.now() - event.occurred_at.ToMilliseconds() / 1000))

    async def _handle_delivery(self, delivery: DurableMessage) -> None:
        try:
            event = events_pb2.ConversationEvent.FromString(delivery.data)
        except Exception:
            log.warning("search indexer: undecodable event %s dropped", delivery.msg_id)
            await delivery.ack()
            return
        try:
            await self.handle(event)
        except Exception:
            log.exception("search indexer: event %s failed; retried", delivery.msg_id)
            await delivery.nak(1.0)
            return
        await delivery.ack()

    async def run_once(self, timeout_s: float = 1.0) -> int:
        """Handles one batch; how many deliveries it had."""
        if self._consumer is None:
            self._consumer = await self._bus.durable_consumer(CONSUMER_NAME, SEARCH_FILTERS)
        deliveries = await self._consumer.fetch(self._batch, timeout_s)
        for delivery in deliveries:
            await self._handle_delivery(delivery)
        return len(deliveries)

    async def _loop(self) -> None:
        while True:
            await self._running.wait()
            await self.run_once()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="search-indexer")

    def pause(self) -> None:
        """Stops fetching after the current batch (the index falls behind the log)."""
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
