"""The indexer: reads message created / edited / deleted events from the durable log
(chatmesh_common.subjects.SEARCH_FILTERS) into a search engine.

At-least-once delivery is harmless: documents are keyed by (conversation, seq) and an edit only
replaces an older version; a delete leaves a tombstone, so a redelivered create never brings the
message back. Membership events change nothing in the index: access is decided at query time.
The lag (now minus the newest handled event's time) is the `chatmesh_search_index_lag_seconds`
gauge.
"""

from __future__ import annotations

import logging

from chatmesh.events.v1 import events_pb2
from prometheus_client import Counter, Gauge

from chatmesh_common.bus import Bus
from chatmesh_common.bus.event_consumer import EventConsumer
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


async def apply_event(engine: SearchEngine, event: events_pb2.ConversationEvent) -> str:
    """Applies one durable event to `engine` (idempotent); the event's payload kind."""
    kind = event.WhichOneof("payload") or ""
    if kind == "message_deleted":
        message = event.message_deleted.message
        await engine.remove(message.conversation_id, message.seq)
    else:
        doc = document(event)
        if doc is not None and not (
            kind == "message_created" and event.message_created.message.deleted
        ):
            await engine.upsert(doc)
    return kind


class Indexer:
    def __init__(
        self, bus: Bus, engine: SearchEngine, clock: Clock, *, batch: int = 100, lanes: int = 1
    ) -> None:
        self._engine = engine
        self._clock = clock
        # Lanes index that many conversations of a batch at once (each in log order): an
        # engine behind a network round trip (solr) overlaps its writes.
        self._consumer = EventConsumer(
            bus, CONSUMER_NAME, SEARCH_FILTERS, self.handle, batch=batch, lanes=lanes
        )

    async def handle(self, event: events_pb2.ConversationEvent) -> None:
        kind = await apply_event(self._engine, event)
        INDEXED.labels(kind or "unknown").inc()
        if event.HasField("occurred_at"):
            INDEX_LAG.set(max(0.0, self._clock.now() - event.occurred_at.ToMilliseconds() / 1000))

    async def run_once(self, timeout_s: float = 1.0) -> int:
        """Handles one batch; how many deliveries it had."""
        return await self._consumer.run_once(timeout_s)

    def start(self) -> None:
        self._consumer.start()

    def pause(self) -> None:
        """Stops fetching after the current batch (the index falls behind the log)."""
        self._consumer.pause()

    def resume(self) -> None:
        self._consumer.resume()

    async def stop(self) -> None:
        await self._consumer.stop()
