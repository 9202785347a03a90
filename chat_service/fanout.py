"""Publishing a conversation's events to the bus, hybrid as the design asks.

Direct conversations and groups fan out on write: one publish per member, on that member's
subject. Channels fan out on read: one publish on the conversation's subject, which the streams
of its members subscribe to. Fanout comes after the durable write and is never the source of
truth: a stream that sees a gap in seqs fills it from the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus

from .store.base import ChatStore, ConversationRecord, Kind

# Plain ids pass as they are; the rest (and every id starting with "x") is hex-encoded behind an
# "x", so no two ids share a subject: subject tokens must not contain '.', '*', '>' or spaces.
_PLAIN_TOKEN = re.compile(r"^[A-Za-wyz0-9_-][A-Za-z0-9_-]{0,63}$")


def _token(raw: str) -> str:
    return raw if _PLAIN_TOKEN.match(raw) else "x" + raw.encode().hex()


def user_subject(user_id: str) -> str:
    return f"chatmesh.user.{_token(user_id)}"


def conversation_subject(conversation_id: str) -> str:
    return f"chatmesh.conv.{_token(conversation_id)}"


def fans_out_on_read(kind: Kind) -> bool:
    return kind == Kind.CHANNEL


class Fanout:
    def __init__(self, bus: Bus, store: ChatStore) -> None:
        self._bus = bus
        self._store = store

    async def publish(
        self,
        conversation: ConversationRecord,
        event: events_pb2.ConversationEvent,
        also_users: Iterable[str] = (),
    ) -> None:
        """Sends one event to every member (and to `also_users`, e.g. a member just removed)."""
        payload = event.SerializeToString()
        if fans_out_on_read(conversation.kind):
            await self._bus.publish(conversation_subject(conversation.conversation_id), payload)
            for user_id in also_users:
                await self._bus.publish(user_subject(user_id), payload)
            return
        recipients = set(await self._store.member_ids(conversation.conversation_id))
        recipients.update(also_users)
        for user_id in recipients:
            await self._bus.publish(user_subject(user_id), payload)

    async def publish_to_users(
        self, event: events_pb2.ConversationEvent, user_ids: Iterable[str]
    ) -> None:
        payload = event.SerializeToString()
        for user_id in user_ids:
            await self._bus.publish(user_subject(user_id), payload)
