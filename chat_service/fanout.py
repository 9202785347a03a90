"""Live fanout of a conversation's events to the streams of its members, hybrid by size.

A conversation with at most `read_threshold` members fans out on write (one publish per member,
on that member's subject); a larger one fans out on read (one publish on the conversation's
subject, which the streams of its members subscribe to). Membership events go to both, so every
member's stream sees a conversation crossing the threshold and (un)subscribes its subject.

Which of these an event takes is decided by `chat_service.events` (the table of event kinds);
this module only knows how each one reaches the bus. Fanout comes after the durable write and is
never the source of truth: a stream that sees a gap in seqs fills it from the store, and a
failed publish is logged, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus
from chatmesh_common.subjects import conversation_subject, user_subject

from .store.base import ChatStore, ConversationRecord

log = logging.getLogger(__name__)

DEFAULT_READ_THRESHOLD = 500


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

    async def to_conversation(
        self, conversation: ConversationRecord, event: events_pb2.ConversationEvent
    ) -> None:
        """Every member: on each member's subject up to the threshold, else the conversation's."""
        if self.fans_out_on_read(conversation.member_count):
            await self._send(
                conversation_subject(conversation.conversation_id), event.SerializeToString()
            )
        else:
            members = await self._store.members_since(conversation.conversation_id, event.seq)
            await self.to_users(event, members)

    async def membership(
        self, conversation: ConversationRecord, event: events_pb2.ConversationEvent
    ) -> None:
        """A membership change: the conversation's subject, the members' subjects when the
        count before or after is at or below the threshold, and the member concerned (also
        after leaving or being removed)."""
        change = event.membership_changed
        after = change.member_count or conversation.member_count
        before = {
            events_pb2.MEMBERSHIP_CHANGE_ADDED: after - 1,
            events_pb2.MEMBERSHIP_CHANGE_REMOVED: after + 1,
            events_pb2.MEMBERSHIP_CHANGE_LEFT: after + 1,
        }.get(change.change, after)
        # Both ways: streams that follow the conversation subject, and every member's stream
        # when the change crosses (or stays at or below) the threshold, so each stream learns
        # that it must start or stop following the subject.
        payload = event.SerializeToString()
        await self._send(conversation_subject(conversation.conversation_id), payload)
        recipients = {change.user_id} if change.user_id else set()
        if not self.fans_out_on_read(min(before, after)):
            recipients.update(
                await self._store.members_since(conversation.conversation_id, event.seq)
            )
        await self._send_to_users(payload, recipients)

    async def to_each_member(
        self, conversation: ConversationRecord, event: events_pb2.ConversationEvent
    ) -> None:
        """Each member's own subject whatever the size (a new conversation: no stream follows
        its subject yet)."""
        await self.to_users(event, await self._store.member_ids(conversation.conversation_id))

    async def to_users(self, event: events_pb2.ConversationEvent, user_ids: Iterable[str]) -> None:
        await self._send_to_users(event.SerializeToString(), user_ids)

    async def _send_to_users(self, payload: bytes, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            await self._send(user_subject(user_id), payload)

    async def _send(self, subject: str, payload: bytes) -> None:
        # The event is durable already: a fanout that fails (bus down, buffer full) must not
        # fail the request. Streams fill the gap from the log; the relay re-fans out later.
        try:
            await self._bus.publish(subject, payload)
        except Exception as exc:
            log.warning("live fanout to %s failed: %s", subject, exc)
