"""Publishing a conversation's events to the bus, hybrid as the design asks.

Live fanout (core NATS, or the in-process bus) chooses by member count: a conversation with at
most `read_threshold` members fans out on write (one publish per member, on that member's
subject); a larger one fans out on read (one publish on the conversation's subject, which the
streams of its members subscribe to). Membership events go to both, so every member's stream
sees a conversation crossing the threshold and (un)subscribes its subject.

Fanout comes after the durable write and is never the source of truth: a stream that sees a gap
in seqs fills it from the store. The durable event stream (JetStream) is fed by
`chat_service.relay` from the log; `durable_subject` and `durable_msg_id` name its messages.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus
from chatmesh_common.subjects import _token, conversation_subject, user_subject

from .store.base import ChatStore, ConversationRecord

log = logging.getLogger(__name__)

DEFAULT_READ_THRESHOLD = 500

_DURABLE_KINDS = {
    "message_created": "created",
    "message_edited": "edited",
    "message_deleted": "deleted",
    "membership_changed": "membership",
    "receipt_moved": "receipt",
    "conversation_created": "conversation",
    "conversation_updated": "conversation",
}


def durable_subject(event: events_pb2.ConversationEvent) -> str:
    """`chatmesh.events.<conversation>.<kind>`: consumers filter by conversation or by kind."""
    kind = _DURABLE_KINDS.get(event.WhichOneof("payload") or "", "other")
    return f"chatmesh.events.{_token(event.conversation_id)}.{kind}"


def durable_msg_id(event: events_pb2.ConversationEvent) -> str:
    """The JetStream dedupe id: `<conversation_id>:<seq>` for log events.

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


class Fanout:
    def __init__(
        self, bus: Bus, store: ChatStore, read_threshold: int = DEFAULT_READ_THRESHOLD
    ) -> None:
        self._bus = bus
        self._store = store
        self.read_threshold = read_threshold

    def fans_out_on_read(self, member_count: int) -> bool:
        """Conversations with more members than the threshold fan out on read."""
        return member_count > self.read_threshold

    async def publish(
        self,
        conversation: ConversationRecord,
        event: events_pb2.ConversationEvent,
        also_users: Iterable[str] = (),
    ) -> None:
        """Sends one event to every member (and to `also_users`, e.g. a member just removed)."""
        payload = event.SerializeToString()
        count = conversation.member_count
        per_member = not self.fans_out_on_read(count)
        if event.HasField("membership_changed"):
            after = event.membership_changed.member_count or count
            before = {
                events_pb2.MEMBERSHIP_CHANGE_ADDED: after - 1,
                events_pb2.MEMBERSHIP_CHANGE_REMOVED: after + 1,
                events_pb2.MEMBERSHIP_CHANGE_LEFT: after + 1,
            }.get(event.membership_changed.change, after)
            # Both ways: streams that follow the conversation subject, and every member's
            # stream when the change crosses (or stays at or below) the threshold, so each
            # stream learns that it must start or stop following the subject.
            per_member = not self.fans_out_on_read(min(before, after))
            await self._send(conversation_subject(conversation.conversation_id), payload)
        elif not per_member:
            await self._send(conversation_subject(conversation.conversation_id), payload)
        recipients = set(also_users)
        if per_member:
            recipients.update(await self._store.member_ids(conversation.conversation_id))
        for user_id in recipients:
            await self._send(user_subject(user_id), payload)

    async def _send(self, subject: str, payload: bytes) -> None:
        # The event is durable already: a fanout that fails (bus down, buffer full) must not
        # fail the request. Streams fill the gap from the log; the relay re-fans out later.
        try:
            await self._bus.publish(subject, payload)
        except Exception as exc:
            log.warning("live fanout to %s failed: %s", subject, exc)

    async def publish_to_users(
        self, event: events_pb2.ConversationEvent, user_ids: Iterable[str]
    ) -> None:
        payload = event.SerializeToString()
        for user_id in user_ids:
            await self._send(user_subject(user_id), payload)
