"""One device's event stream: the replay after its cursors, then live events, with no gap.

The stream subscribes to the bus before it reads the store, so an event is either in the replay
or arrives live (or both; duplicates are dropped by seq). Live events of a conversation must follow
each other seq by seq: when one is missing (fanout reordered or lost it), the stream reads the gap
from the store before going on. So fanout is never the source of truth; the log is.

A conversation above the fan-out-on-read threshold is followed through its own subject; the
stream subscribes it at start and whenever a membership event shows the member count crossing
the threshold upward (then reads the log for what was published meanwhile), and drops it when
the count falls back. When the bus reconnects (NATS restarted, a network cut), live events may
have been lost with no later event to reveal the gap, so the stream re-reads the log of every
conversation of the user after the last seq it sent (or after its start).

A suspended user gets no stream, and a stream open when a moderator suspends its user ends
(`UserSuspended`): the stream follows the user's suspension subject from before it checks the
stored suspension, so a suspension is either seen at the start or arrives on the subject.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Sequence

from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import event_service_pb2, events_pb2

from chatmesh_common.bus import Bus, Subscription
from chatmesh_common.subjects import conversation_subject, suspension_subject, user_subject

from . import convert
from .chat import MAX_SEQ, Chat

log = logging.getLogger(__name__)

REPLAY_PAGE = 500

# Payloads parsed lately, shared by every stream the bus hands the same payload to: one publish
# reaches each member's stream with the same bytes, so it is parsed once, not once per member.
# The parsed events are read only (`_deliver` never changes them; the response each stream
# yields holds a copy). Bounded: the oldest entry goes first.
_PARSED_KEPT = 512
_parsed: dict[bytes, events_pb2.ConversationEvent] = {}


def parse_shared(payload: bytes) -> events_pb2.ConversationEvent:
    """The event of a bus payload, parsed once for every stream it reaches. Do not mutate it."""
    event = _parsed.get(payload)
    if event is None:
        event = events_pb2.ConversationEvent.FromString(payload)
        if len(_parsed) >= _PARSED_KEPT:
            del _parsed[next(iter(_parsed))]
        _parsed[payload] = event
    return event


class StreamOverflow(Exception):
    """The consumer fell too far behind; it must resume from its last seqs."""


class UserSuspended(Exception):
    """The stream's user is suspended by the moderators."""


class _Signal(enum.Enum):
    OVERFLOW = 1
    RESYNC = 2
    SUSPENDED = 3


class EventStream:
    def __init__(self, chat: Chat, bus: Bus, user_id: str, max_queued: int = 10_000) -> None:
        self._chat = chat
        self._bus = bus
        self._user_id = user_id
        self._queue: asyncio.Queue[events_pb2.ConversationEvent | _Signal] = asyncio.Queue()
        self._max_queued = max_queued
        self._overflowed = False
        self._resync_queued = False
        self._subscriptions: dict[str, Subscription] = {}
        # The highest seq sent per conversation: drops duplicates, detects gaps.
        self._last: dict[str, int] = {}
        # Each conversation's last seq when the stream started: where a resync reads from when
        # nothing of that conversation has been sent yet.
        self._since: dict[str, int] = {}
        # Conversations the user left or was removed from, with that event's seq: anything of
        # them still queued behind it is dropped, until the user is added again.
        self._gone: dict[str, int] = {}
        self._remove_reconnect_callback = bus.on_reconnect(self._on_reconnect)

    def _on_payload(self, _subject: str, payload: bytes) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= self._max_queued:
            self._overflowed = True
            self._queue.put_nowait(_Signal.OVERFLOW)
            return
        self._queue.put_nowait(parse_shared(payload))

    def _on_suspended(self, _subject: str, _payload: bytes) -> None:
        self._queue.put_nowait(_Signal.SUSPENDED)

    def _on_reconnect(self) -> None:
        if not self._resync_queued and not self._overflowed:
            self._resync_queued = True
            self._queue.put_nowait(_Signal.RESYNC)

    def _on_read(self, member_count: int) -> bool:
        return self._chat.fanout.fans_out_on_read(member_count)

    async def _subscribe(self, subject: str) -> None:
        if subject not in self._subscriptions:
            self._subscriptions[subject] = await self._bus.subscribe(subject, self._on_payload)

    async def _unsubscribe(self, subject: str) -> None:
        subscription = self._subscriptions.pop(subject, None)
        if subscription is not None:
            await subscription.unsubscribe()

    async def close(self) -> None:
        self._remove_reconnect_callback()
        for subject in list(self._subscriptions):
            await self._unsubscribe(subject)

    async def run(
        self, cursors: Sequence[types_pb2.ConversationCursor]
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        store = self._chat.store
        suspended = suspension_subject(self._user_id)
        self._subscriptions[suspended] = await self._bus.subscribe(suspended, self._on_suspended)
        await self._require_active()
        await self._subscribe(user_subject(self._user_id))
        for membership in await store.user_conversations(self._user_id):
            conversation = await store.get_conversation(membership.conversation_id)
            if conversation is None:
                continue
            self._since[conversation.conversation_id] = conversation.last_seq
            if self._on_read(conversation.member_count):
                await self._subscribe(conversation_subject(conversation.conversation_id))

        revoked: list[str] = []
        for cursor in cursors:
            member = await store.get_member(cursor.conversation_id, self._user_id)
            if member is None:
                revoked.append(cursor.conversation_id)
                continue
            seq = min(cursor.seq, MAX_SEQ)
            self._last[cursor.conversation_id] = seq
            async for event in self._read_log(cursor.conversation_id, seq, 0):
                yield event
        caught_up = event_service_pb2.CaughtUp(revoked_conversation_ids=revoked)
        for cid, since in self._since.items():
            if cid not in self._last:
                caught_up.baselines.add(conversation_id=cid, seq=since)
        yield event_service_pb2.SubscribeEventsResponse(caught_up=caught_up)

        while True:
            live = await self._queue.get()
            if live is _Signal.OVERFLOW:
                raise StreamOverflow(
                    f"more than {self._max_queued} events waiting; resume from the last seqs"
                )
            if live is _Signal.SUSPENDED:
                await self._require_active()
                continue  # unsuspended again meanwhile
            if live is _Signal.RESYNC:
                self._resync_queued = False
                async for item in self._resync():
                    yield item
                continue
            assert isinstance(live, events_pb2.ConversationEvent)
            async for item in self._deliver(live):
                yield item

    async def _require_active(self) -> None:
        suspension = await self._chat.store.get_suspension(self._user_id)
        if suspension is not None:
            reason = f": {suspension.reason}" if suspension.reason else ""
            raise UserSuspended(f"user {self._user_id} is suspended by the moderators{reason}")

    async def _resync(self) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        """After a bus reconnect: the log of each conversation after what was sent."""
        store = self._chat.store
        memberships = {m.conversation_id: m for m in await store.user_conversations(self._user_id)}
        for cid in [*memberships, *(c for c in self._last if c not in memberships)]:
            after = self._last.get(cid, self._since.get(cid))
            if after is None:
                # Joined while the bus was away: from the seq of joining (the member row starts
                # its markers there), so the join itself is delivered.
                membership = memberships[cid]
                after = max(min(membership.last_read_seq, membership.last_delivered_seq) - 1, 0)
            while True:
                page = await store.events_after(cid, after, REPLAY_PAGE)
                for record in page:
                    after = record.seq
                    async for item in self._deliver(convert.event(record)):
                        yield item
                if len(page) < REPLAY_PAGE:
                    break
            conversation = await store.get_conversation(cid)
            if cid in memberships and conversation is not None:
                if self._on_read(conversation.member_count):
                    async for item in self._follow_channel(cid, after):
                        yield item

    async def _read_log(
        self, conversation_id: str, after_seq: int, up_to: int
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        """Events after `after_seq` (up to `up_to` inclusive; 0 for all), updating _last."""
        store = self._chat.store
        while True:
            page = await store.events_after(conversation_id, after_seq, REPLAY_PAGE)
            for record in page:
                if up_to and record.seq > up_to:
                    return
                after_seq = record.seq
                self._last[conversation_id] = record.seq
                yield event_service_pb2.SubscribeEventsResponse(event=convert.event(record))
            if len(page) < REPLAY_PAGE:
                return

    async def _deliver(
        self, event: events_pb2.ConversationEvent
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        cid = event.conversation_id
        if cid in self._gone:
            if not self._is_own_membership(event, events_pb2.MEMBERSHIP_CHANGE_ADDED) or (
                event.seq <= self._gone[cid]
            ):
                return  # queued before the user left, or a signal of a conversation left
            del self._gone[cid]
        if event.seq == 0:
            # Live signals (receipts, creation) are not part of the log.
            yield event_service_pb2.SubscribeEventsResponse(event=event)
            if event.HasField("conversation_created"):
                created = event.conversation_created.conversation
                self._since.setdefault(cid, 0)
                if self._on_read(created.member_count):
                    async for item in self._follow_channel(cid, 0):
                        yield item
            return
        # Without a cursor, the conversation's seq when the stream started is the baseline, so
        # a live event that overtook an earlier one (two replicas) still shows up as a gap.
        last = self._last.get(cid, self._since.get(cid))
        if last is not None and event.seq <= last:
            return  # already sent (replay and live overlap, or a redelivery)
        if last is not None and event.seq > last + 1:
            async for item in self._read_log(cid, last, event.seq - 1):
                yield item
        self._last[cid] = event.seq
        yield event_service_pb2.SubscribeEventsResponse(event=event)
        if not event.HasField("membership_changed"):
            return
        if self._is_own_membership(
            event, events_pb2.MEMBERSHIP_CHANGE_REMOVED
        ) or self._is_own_membership(event, events_pb2.MEMBERSHIP_CHANGE_LEFT):
            self._gone[cid] = event.seq
            self._last.pop(cid, None)
            self._since.pop(cid, None)
            await self._unsubscribe(conversation_subject(cid))
            return
        # Any other membership change may cross the fan-out-on-read threshold either way.
        count = event.membership_changed.member_count
        if not count:
            conversation = await self._chat.store.get_conversation(cid)
            count = conversation.member_count if conversation is not None else 0
        subject = conversation_subject(cid)
        if self._on_read(count):
            if subject not in self._subscriptions:
                async for item in self._follow_channel(cid, event.seq):
                    yield item
        elif subject in self._subscriptions:
            # Back to fan-out on write: events now come on the user's own subject. Anything
            # in between that is lost shows up as a gap and is read from the store.
            await self._unsubscribe(subject)

    def _is_own_membership(self, event: events_pb2.ConversationEvent, change: int) -> bool:
        return (
            event.HasField("membership_changed")
            and event.membership_changed.change == change
            and event.membership_changed.user_id == self._user_id
        )

    async def _follow_channel(
        self, conversation_id: str, after_seq: int
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        """Subscribes to a conversation's subject (joined just now, or it grew past the
        threshold), then reads what was published before the subscription took effect."""
        await self._subscribe(conversation_subject(conversation_id))
        self._last.setdefault(conversation_id, after_seq)
        async for item in self._read_log(conversation_id, self._last[conversation_id], 0):
            yield item
