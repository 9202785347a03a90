"""The push consumer: reads new messages, deletes and receipts from the durable log
(chatmesh_common.subjects.PUSH_FILTERS, durable consumer `notify`) and turns them into queued
pushes. It never sends: the delivery loop does (notify_service.delivery).

Per new message it asks chat_service for the audience (members, blocks, chat-side mutes),
applies each member's notify settings, asks presence_service who is online, and queues one push
per device of each remaining member, THEN acks. A crash before the ack redelivers the event;
the store's queue keys make the second pass queue nothing new. A delete cancels the message's
pushes still queued; a read cancels the reader's queued pushes up to the marker and queues a
silent update that clears the conversation on the reader's devices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus
from chatmesh_common.bus.event_consumer import EventConsumer
from chatmesh_common.clock import Clock
from chatmesh_common.logs import fields
from chatmesh_common.subjects import PUSH_FILTERS

from .access import Audience, NotFound, NotifyAccess
from .metrics import EVENTS, QUEUED
from .payloads import clear_push, message_push
from .store.base import (
    ConversationSetting,
    DeviceRecord,
    Level,
    NewPush,
    NotifyStore,
    Preview,
    PushKind,
)

log = logging.getLogger(__name__)

CONSUMER_NAME = "notify"
# An event whose dependencies are down comes again after this long.
RETRY_DELAY_S = 2.0


def wants_push(setting: ConversationSetting, kind: int, mentioned: bool, now: float) -> bool:
    """A member's own settings: a mute wins (mentions included), then the level, whose default
    is mentions only in channels and everything elsewhere."""
    if setting.muted(now):
        return False
    level = setting.level
    if level is Level.DEFAULT:
        level = Level.MENTIONS if kind == types_pb2.CONVERSATION_KIND_CHANNEL else Level.ALL
    if level is Level.NONE:
        return False
    return level is Level.ALL or mentioned


class PushConsumer:
    def __init__(
        self,
        bus: Bus,
        store: NotifyStore,
        access: NotifyAccess,
        clock: Clock,
        *,
        min_interval_s: float = 0.0,
        batch: int = 50,
        ack_wait_s: float = 30.0,
        lanes: int = 1,
        on_queued: asyncio.Event | None = None,
    ) -> None:
        self._store = store
        self._access = access
        self._clock = clock
        self._min_interval_s = min_interval_s
        self._on_queued = on_queued
        # A failing handler (chat or presence unavailable) naks: the event comes back later.
        self._consumer = EventConsumer(
            bus, CONSUMER_NAME, PUSH_FILTERS, self._handle_logged, batch=batch,
            retry_delay_s=RETRY_DELAY_S, ack_wait_s=ack_wait_s, lanes=lanes,
        )  # fmt: skip

    async def handle(self, event: events_pb2.ConversationEvent) -> int:
        """Queues what one event calls for; how many pushes it queued."""
        kind = event.WhichOneof("payload") or "unknown"
        EVENTS.labels(kind).inc()
        if kind == "message_created":
            return await self._created(event)
        if kind == "message_deleted":
            message = event.message_deleted.message
            await self._store.cancel(message.conversation_id, message.seq)
            return 0
        if kind == "receipt_moved":
            return await self._read(event)
        return 0

    async def _created(self, event: events_pb2.ConversationEvent) -> int:
        message = event.message_created.message
        if message.deleted or message.kind == types_pb2.MESSAGE_KIND_SYSTEM:
            return 0
        try:
            audience = await self._access.push_audience(message.conversation_id, message.seq)
        except NotFound:
            return 0
        if audience.message.deleted:
            return 0
        recipients, devices = await self._recipients(audience, set(message.mentions))
        if not recipients:
            return 0
        now = self._clock.now()
        badges = await self._access.unread_totals(list(recipients))
        conversation = audience.conversation
        group = conversation.kind != types_pb2.CONVERSATION_KIND_DIRECT
        event_at = (
            event.occurred_at.ToMilliseconds() / 1000 if event.HasField("occurred_at") else now
        )
        pushes = []
        for user_id, preview in recipients.items():
            payload = message_push(
                preview,
                conversation_id=conversation.conversation_id,
                title=conversation.title,
                group=group,
                seq=message.seq,
                message_id=audience.message.message_id,
                sender_id=audience.message.sender_id,
                body=audience.message.body,
                badge=badges.get(user_id, 0),
            )
            for device in devices.get(user_id, ()):
                pushes.append(
                    NewPush(user_id, device.device_id, conversation.conversation_id,
                            message.seq, PushKind.MESSAGE, payload, event_at, now)
                )  # fmt: skip
        return await self._enqueue(pushes, PushKind.MESSAGE)

    async def _recipients(
        self, audience: Audience, mentions: set[str]
    ) -> tuple[dict[str, Preview], Mapping[str, Sequence[DeviceRecord]]]:
        """Members to push to, with their preview level: with a push target, not muted or
        blocking in chat, whose own settings want it, and with no online device; and their
        devices. Members with no target are dropped first: they cost no presence or unread
        lookup (most members of most deployments never register one)."""
        now = self._clock.now()
        candidates = [m.user_id for m in audience.members if not (m.blocked_sender or m.muted)]
        devices = await self._store.devices_of(candidates)
        candidates = [user_id for user_id in candidates if devices.get(user_id)]
        if not candidates:
            return {}, devices
        settings = await self._store.settings_for(candidates, audience.conversation.conversation_id)
        wanted = [
            user_id
            for user_id in candidates
            if wants_push(
                settings[user_id][1], audience.conversation.kind, user_id in mentions, now
            )
        ]
        if not wanted:
            return {}, devices
        online = await self._access.online_users(wanted)
        return {u: settings[u][0] for u in wanted if u not in online}, devices

    async def _read(self, event: events_pb2.ConversationEvent) -> int:
        receipt = event.receipt_moved
        conversation_id = event.conversation_id
        if not receipt.user_id or not receipt.last_read_seq:
            return 0
        await self._store.cancel(
            conversation_id, receipt.last_read_seq, user_id=receipt.user_id, up_to=True
        )
        if not await self._store.pushed_since_clear(receipt.user_id, conversation_id):
            return 0
        devices = await self._store.list_devices(receipt.user_id)
        if not devices:
            return 0
        badge = (await self._access.unread_totals([receipt.user_id])).get(receipt.user_id, 0)
        now = self._clock.now()
        payload = clear_push(conversation_id, receipt.last_read_seq, badge)
        pushes = [
            NewPush(receipt.user_id, d.device_id, conversation_id, receipt.last_read_seq,
                    PushKind.CLEAR, payload, now, now)
            for d in devices
        ]  # fmt: skip
        return await self._enqueue(pushes, PushKind.CLEAR)

    async def _enqueue(self, pushes: Sequence[NewPush], kind: PushKind) -> int:
        if not pushes:
            return 0
        result = await self._store.enqueue(pushes, self._min_interval_s)
        QUEUED.labels(kind.value).inc(result.queued)
        if result.queued and self._on_queued is not None:
            self._on_queued.set()
        return result.queued

    async def _handle_logged(self, event: events_pb2.ConversationEvent) -> None:
        queued = await self.handle(event)
        if queued:
            log.info(
                "pushes queued",
                extra=fields(conversation=event.conversation_id, seq=event.seq, queued=queued),
            )

    async def run_once(self, timeout_s: float = 1.0) -> int:
        """Handles one batch; how many deliveries it had."""
        return await self._consumer.run_once(timeout_s)

    def start(self) -> None:
        self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
