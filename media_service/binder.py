"""Which messages attach which media, followed from chat_service's event log.

A created message adds a reference from each attached media id to its (conversation, seq); a
deleted one marks its references deleted, and media left with no live reference becomes
unreachable (its objects are removed by the sweeper after the grace period). Downloads never
wait for this: they ask chat_service whether the message is still readable at request time.
Replays are harmless: references are a set and deleting twice changes nothing.
"""

from __future__ import annotations

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus
from chatmesh_common.bus.event_consumer import EventConsumer
from chatmesh_common.clock import Clock
from chatmesh_common.subjects import MEDIA_FILTERS

from .store.base import MediaStore

CONSUMER_NAME = "media-binder"


class Binder:
    def __init__(self, store: MediaStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def handle(self, event: events_pb2.ConversationEvent) -> None:
        kind = event.WhichOneof("payload")
        if kind == "message_created":
            message = event.message_created.message
            for media_id in message.attachments:
                await self._store.add_reference(
                    media_id,
                    message.conversation_id,
                    message.seq,
                    message.created_at.ToMilliseconds() / 1000,
                )
        elif kind == "message_deleted":
            message = event.message_deleted.message
            await self._store.delete_message(
                message.conversation_id, message.seq, self._clock.now()
            )

    def consumer(self, bus: Bus) -> EventConsumer:
        return EventConsumer(bus, CONSUMER_NAME, MEDIA_FILTERS, self.handle)
