"""The one event sink of chat_service: every write hands its events here, and `ROUTES` decides.

Per event kind (the `payload` of `ConversationEvent`), `ROUTES` says:

* durable: `LOG` events are in the conversation's log with a seq; the relay takes them from the
  outbox to the durable stream (`chat_service.relay`), so none is lost. `SIGNAL` events (seq 0,
  not in the log) are published durably once, with a few retries. `LIVE` events never reach the
  durable stream.
* live: who gets it now (`chat_service.fanout`): `CONVERSATION` the members, by the fan-out
  threshold (each member's subject, or the conversation subject), `MEMBERSHIP` both ways plus
  the member concerned, `EACH_MEMBER` each member's own subject whatever the size,
  `RECIPIENTS` the users the writer names (receipts: the members who may see them).

`EventSink.emit` follows the table for what a write produced; the relay's re-fanout of events
left behind follows it too (`fan_out_live`). The write's answer (a send's ack) does not wait for
the live fanout: `emit` hands the events to the conversation's lane, which publishes them in
order in the background, so a sender to a 5,000-member channel is acknowledged once its message
is durable. Only a lane that has fallen `max_pending` events behind makes its writers wait.
`durable_subject` and `durable_msg_id` name the durable messages.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from chatmesh.events.v1 import events_pb2

from chatmesh_common import subjects
from chatmesh_common.subjects import DurableKind

from . import convert
from .fanout import Fanout
from .store.base import ConversationRecord, EventRecord

log = logging.getLogger(__name__)


class Durable(enum.Enum):
    LOG = "log"
    SIGNAL = "signal"
    LIVE = "live only"


class Live(enum.Enum):
    CONVERSATION = "conversation"
    MEMBERSHIP = "membership"
    EACH_MEMBER = "each member"
    RECIPIENTS = "recipients"


@dataclass(frozen=True)
class Route:
    durable: Durable
    live: Live
    # The last token of the durable subject (None for live-only events).
    kind: DurableKind | None = None


ROUTES: Final[Mapping[str, Route]] = {
    "message_created": Route(Durable.LOG, Live.CONVERSATION, DurableKind.CREATED),
    "message_edited": Route(Durable.LOG, Live.CONVERSATION, DurableKind.EDITED),
    "message_deleted": Route(Durable.LOG, Live.CONVERSATION, DurableKind.DELETED),
    "membership_changed": Route(Durable.LOG, Live.MEMBERSHIP, DurableKind.MEMBERSHIP),
    # Receipts: per reader, to the members who may see them (blocks; a channel's reader only).
    "receipt_moved": Route(Durable.SIGNAL, Live.RECIPIENTS, DurableKind.RECEIPT),
    # A new conversation: no stream follows its subject yet, whatever its size.
    "conversation_created": Route(Durable.LIVE, Live.EACH_MEMBER),
    "conversation_updated": Route(Durable.LIVE, Live.CONVERSATION),
    # Typing is published by presence_service (to the recipients it checked), never stored.
    "typing_changed": Route(Durable.LIVE, Live.RECIPIENTS),
}


def route(event: events_pb2.ConversationEvent) -> Route:
    kind = event.WhichOneof("payload")
    if kind is None or kind not in ROUTES:
        raise ValueError(f"no route for a ConversationEvent with payload {kind!r}")
    return ROUTES[kind]


def durable_subject(event: events_pb2.ConversationEvent) -> str:
    """`chatmesh.events.<conversation>.<kind>`: consumers filter by conversation or by kind."""
    kind = route(event).kind
    if kind is None:
        raise ValueError(f"{event.WhichOneof('payload')} events are live only")
    return subjects.durable_subject(event.conversation_id, kind)


def durable_msg_id(event: events_pb2.ConversationEvent) -> str:
    """The durable dedupe id: `<conversation_id>:<seq>` for log events.

    A seq names one event for ever, so a relay repeating it (after a lost ack, or two replicas
    racing) stores nothing new. Receipts (seq 0) are named by their content: the same marker
    position published twice is one event, a later position is another.
    """
    if event.seq:
        return f"{event.conversation_id}:{event.seq}"
    if event.HasField("receipt_moved"):
        r = event.receipt_moved
        return f"{event.conversation_id}:r:{r.user_id}:{r.last_read_seq}:{r.last_delivered_seq}"
    digest = hashlib.sha256(event.SerializeToString(deterministic=True)).hexdigest()[:32]
    return f"{event.conversation_id}:h:{digest}"


async def fan_out_live(
    fanout: Fanout,
    conversation: ConversationRecord,
    event: events_pb2.ConversationEvent,
    recipients: Sequence[str] = (),
) -> None:
    """Sends one event to whoever its route names."""
    live = route(event).live
    if live is Live.CONVERSATION:
        await fanout.to_conversation(conversation, event)
    elif live is Live.MEMBERSHIP:
        await fanout.membership(conversation, event)
    elif live is Live.EACH_MEMBER:
        await fanout.to_each_member(conversation, event)
    else:
        await fanout.to_users(event, recipients)


class DurablePath(Protocol):
    """Where durable events go (`chat_service.relay.Relay`)."""

    def kick(self, conversation_id: str, records: Sequence[EventRecord] = ()) -> None: ...

    def publish_signal(self, event: events_pb2.ConversationEvent) -> None: ...


@dataclass
class _Lane:
    """One conversation's live events waiting to be fanned out, in seq order."""

    pending: deque[tuple[ConversationRecord, events_pb2.ConversationEvent, Sequence[str]]] = field(
        default_factory=deque
    )
    task: asyncio.Task[None] | None = None
    drained: asyncio.Event = field(default_factory=asyncio.Event)


class EventSink:
    def __init__(
        self, fanout: Fanout, durable: DurablePath | None = None, *, max_pending: int = 1024
    ) -> None:
        self._fanout = fanout
        self._durable = durable
        self._max_pending = max_pending
        self._lanes: dict[str, _Lane] = {}

    @property
    def fanout(self) -> Fanout:
        return self._fanout

    async def emit(
        self,
        conversation: ConversationRecord,
        events: Sequence[EventRecord | events_pb2.ConversationEvent],
        recipients: Sequence[str] = (),
    ) -> None:
        """What one write produced, after its durable write: log records just committed, or
        seq-0 signals. `recipients`: for `RECIPIENTS` routes, who may get them. Returns once the
        events are on their way (durable path kicked, live fanout queued), not delivered."""
        records = [e for e in events if isinstance(e, EventRecord)]
        if records and self._durable is not None:
            # First, so the durable stream gets them even if live fanout is slow.
            self._durable.kick(conversation.conversation_id, records)
        lane = self._lanes.get(conversation.conversation_id)
        if lane is None:
            lane = self._lanes[conversation.conversation_id] = _Lane()
        for item in events:
            event = convert.event(item) if isinstance(item, EventRecord) else item
            durable = route(event).durable
            if (durable is Durable.LOG) != isinstance(item, EventRecord):
                raise ValueError(
                    f"{event.WhichOneof('payload')}: log events come as committed records"
                )
            if durable is Durable.SIGNAL and self._durable is not None:
                self._durable.publish_signal(event)
            lane.pending.append((conversation, event, recipients))
        if lane.task is None:
            lane.drained.clear()
            lane.task = asyncio.create_task(
                self._drain(conversation.conversation_id, lane),
                name=f"fanout {conversation.conversation_id}",
            )
        if len(lane.pending) > self._max_pending:
            # Backpressure: a lane this far behind slows its writers instead of growing.
            await lane.drained.wait()

    async def _drain(self, conversation_id: str, lane: _Lane) -> None:
        try:
            while lane.pending:
                conversation, event, recipients = lane.pending.popleft()
                try:
                    await fan_out_live(self._fanout, conversation, event, recipients)
                except Exception:  # the event is durable: streams fill the gap from the log
                    log.exception("live fanout in %s failed", conversation_id)
        finally:
            lane.task = None
            lane.drained.set()
            if not lane.pending and self._lanes.get(conversation_id) is lane:
                del self._lanes[conversation_id]

    async def flush(self) -> None:
        """Waits until every queued live event has been fanned out (shutdown, tests)."""
        while self._lanes:
            lanes = list(self._lanes.values())
            await asyncio.gather(*(lane.drained.wait() for lane in lanes if lane.task))
            for conversation_id, lane in list(self._lanes.items()):
                if lane.task is None and not lane.pending:
                    del self._lanes[conversation_id]
