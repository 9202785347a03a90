"""The rules of chat: who may do what in which conversation, checked on every call.

`Chat` sits between the servicer (protos and status codes) and the store (durable state). Every
method takes the caller's user id, checks membership, blocks, roles and limits at the time of the
request, writes through the store, and hands the resulting events to the event sink
(`chat_service.events`) after the durable write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from chatmesh.events.v1 import events_pb2

from chatmesh_common.clock import Clock, SystemClock
from chatmesh_common.ids import new_id
from chatmesh_common.limits import LIMITS, Limits
from chatmesh_common.limits import MAX_SEQ as MAX_SEQ
from chatmesh_common.ratelimit import RateLimiter
from chatmesh_common.rpc import RpcError as ChatError
from chatmesh_common.rpc import check_id as _check_id
from chatmesh_common.rpc import denied as _denied
from chatmesh_common.rpc import invalid as _invalid
from chatmesh_common.rpc import precondition as _precondition

from . import convert
from .attachments import Attachments, NoMedia
from .events import EventSink
from .fanout import Fanout
from .screening import AllowAll, MessageScreen
from .store.base import (
    ChatStore,
    ConversationRecord,
    EventKind,
    EventRecord,
    HeldState,
    HistoryDirection,
    Kind,
    MemberRecord,
    MembershipChange,
    MessageRecord,
    NewConversation,
    NewMessage,
    Role,
)

log = logging.getLogger(__name__)

MESSAGE_KIND_TEXT = 1
MESSAGE_KIND_MEDIA = 2


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send's answer: the stored message (or, `held`, the message held for review, seq 0)."""

    message: MessageRecord
    duplicate: bool
    held: bool = False


@dataclass(frozen=True, slots=True)
class ConversationState:
    """A conversation as one member sees it."""

    conversation: ConversationRecord
    member: MemberRecord
    last_message: MessageRecord | None
    unread: int
    peer_user_id: str


def _hourly(per_hour: float, burst: int, clock: Clock) -> RateLimiter | None:
    return RateLimiter(per_hour / 3600.0, burst, clock.monotonic) if per_hour > 0 else None


def _charge(limiter: RateLimiter | None, user_id: str, cost: int, what: str) -> None:
    """RESOURCE_EXHAUSTED with a retry-after when `user_id` is over its allowance of `what`."""
    if limiter is None or cost <= 0:
        return
    wait = limiter.acquire(user_id, cost)
    if wait > 0:
        raise ChatError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"rate limit: too many {what}; retry after {wait:.0f} s",
            retry_after_s=wait,
        )


class Chat:
    def __init__(
        self,
        store: ChatStore,
        events: EventSink,
        limits: Limits | None = None,
        clock: Clock | None = None,
        attachments: Attachments | None = None,
        screen: MessageScreen | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._attachments = attachments or NoMedia()
        # Channel messages are screened before they are written (chat_service.screening).
        self._screen: MessageScreen = screen or AllowAll()
        self._limits = limits = limits or LIMITS
        self._clock = clock = clock or SystemClock()
        self._creations = _hourly(limits.conversations_per_hour, limits.conversation_burst, clock)
        self._invites = _hourly(limits.invites_per_hour, limits.invite_burst, clock)

    @property
    def store(self) -> ChatStore:
        return self._store

    @property
    def fanout(self) -> Fanout:
        return self._events.fanout

    @property
    def events(self) -> EventSink:
        return self._events

    @property
    def clock(self) -> Clock:
        return self._clock

    # Access checks

    async def require_member(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, MemberRecord]:
        """The conversation and the caller's membership; PERMISSION_DENIED if either is missing."""
        _check_id("conversation_id", conversation_id)
        member, conversation = await asyncio.gather(
            self._store.get_member(conversation_id, user_id),
            self._store.get_conversation(conversation_id),
        )
        if member is None or conversation is None:
            raise _denied(f"not a member of conversation {conversation_id}")
        return conversation, member

    async def require_active(self, user_id: str) -> None:
        """PERMISSION_DENIED naming the suspension when a moderator suspended the user."""
        suspension = await self._store.get_suspension(user_id)
        if suspension is not None:
            raise _denied(suspension.refusal())

    async def require_writer(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, MemberRecord]:
        """`require_member` for a write: the user must not be suspended either (both read at
        once, so the suspension check costs a send no extra round trip). This early check is
        not what binds: a suspension landing after it is caught by the store's write itself
        (SuspendedError), so nothing of the user is written once SuspendUser has returned."""
        (conversation, member), _active = await asyncio.gather(
            self.require_member(conversation_id, user_id), self.require_active(user_id)
        )
        return conversation, member

    async def require_sender(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, Role]:
        """`require_writer` for a message's write (send, edit, delete): the conversation, the
        writer's role and the suspension in one store call (`member_role`: on the cluster store
        one head read while the membership is known as of that head). The store checks
        membership and suspension again at the write itself, so a removal or suspension landing
        after this check binds there (NotMemberError, SuspendedError)."""
        _check_id("conversation_id", conversation_id)
        found = await self._store.member_role(conversation_id, user_id)
        if found is None:
            raise _denied(f"not a member of conversation {conversation_id}")
        return found

    async def _screen_body(
        self, conversation: ConversationRecord, user_id: str, body: str, *, may_hold: bool
    ) -> str:
        """ "" when allowed; the rule's reason when held (only where `may_hold`: new
        messages); INVALID_ARGUMENT naming the rule when rejected."""
        if conversation.kind != Kind.CHANNEL:
            return ""
        verdict = await self._screen.check(conversation, user_id, body)
        if verdict.held and may_hold:
            return verdict.reason
        if not verdict.allowed:
            suffix = "; an edit is not held for review" if verdict.held else ""
            raise _invalid(f"message rejected by moderation: {verdict.reason}{suffix}")
        return ""

    async def _peer(self, conversation: ConversationRecord, user_id: str) -> str:
        if conversation.kind != Kind.DIRECT:
            return ""
        others = [
            u for u in await self._store.member_ids(conversation.conversation_id) if u != user_id
        ]
        return others[0] if others else ""

    async def _require_writable(self, conversation: ConversationRecord, user_id: str) -> None:
        if conversation.archived:
            raise _precondition(f"conversation {conversation.conversation_id} is archived")
        if conversation.kind == Kind.DIRECT:
            peer = await self._peer(conversation, user_id)
            if peer and await self._store.is_blocked(peer, user_id):
                raise _denied("you are blocked by the other member of this direct conversation")
            if peer and await self._store.is_blocked(user_id, peer):
                raise _denied("you have blocked the other member; unblock them to write")

    @staticmethod
    def _require_manager(conversation: ConversationRecord, member: MemberRecord) -> None:
        if conversation.kind == Kind.DIRECT:
            raise _precondition("direct conversations have no roles or membership changes")
        if member.role not in (Role.OWNER, Role.ADMIN):
            raise _denied("only the owner or an admin can do this")

    def _page_size(self, field: str, value: int, default: int, maximum: int) -> int:
        if value == 0:
            return default
        if value > maximum:
            raise _invalid(f"{field} must be at most {maximum}, got {value}")
        return value

    # Conversations

    async def create_conversation(
        self, user_id: str, kind: int, title: str, member_ids: Sequence[str]
    ) -> tuple[ConversationState, bool]:
        if kind not in (Kind.DIRECT, Kind.GROUP, Kind.CHANNEL):
            raise _invalid("kind must be DIRECT, GROUP or CHANNEL")
        if len(title) > self._limits.max_title_chars:
            raise _invalid(f"title must be at most {self._limits.max_title_chars} characters")
        others: list[str] = []
        for member_id in member_ids:
            _check_id("member_ids", member_id)
            if member_id != user_id and member_id not in others:
                others.append(member_id)
        now = self._clock.now()
        if kind == Kind.DIRECT:
            if len(others) != 1:
                raise _invalid("a direct conversation needs exactly one other member in member_ids")
            peer = others[0]
            if await self._store.is_blocked(peer, user_id):
                raise _denied(f"{peer} has blocked you")
            if await self._store.is_blocked(user_id, peer):
                raise _denied(f"you have blocked {peer}; unblock them first")
            new = NewConversation(
                conversation_id=new_id(now),
                kind=Kind.DIRECT,
                title="",
                created_by=user_id,
                created_at=now,
                members=[(user_id, Role.MEMBER), (peer, Role.MEMBER)],
                direct_key=json.dumps(sorted([user_id, peer])),
            )
        else:
            if kind == Kind.GROUP and len(others) + 1 > self._limits.max_group_members:
                raise _precondition(f"a group has at most {self._limits.max_group_members} members")
            new = NewConversation(
                conversation_id=new_id(now),
                kind=Kind(kind),
                title=title,
                created_by=user_id,
                created_at=now,
                members=[(user_id, Role.OWNER), *((u, Role.MEMBER) for u in others)],
            )
        await self.require_active(user_id)
        _charge(self._creations, user_id, 1, "conversations created")
        _charge(self._invites, user_id, len(others), "members added")
        conversation, created = await self._store.create_conversation(new)
        if created:
            event = events_pb2.ConversationEvent(
                conversation_id=conversation.conversation_id,
                occurred_at=convert.timestamp(now),
                actor_id=user_id,
            )
            event.conversation_created.conversation.CopyFrom(convert.conversation(conversation))
            await self._events.emit(conversation, [event])
        return await self.conversation_state(conversation.conversation_id, user_id), created

    async def conversation_state(self, conversation_id: str, user_id: str) -> ConversationState:
        conversation, member = await self.require_member(conversation_id, user_id)
        return await self._state(conversation, member)

    async def _state(
        self, conversation: ConversationRecord, member: MemberRecord
    ) -> ConversationState:
        cid = conversation.conversation_id
        last = await self._store.history(cid, 0, 0, 1)
        unread = await self._store.count_unread(cid, member.user_id, member.last_read_seq)
        return ConversationState(
            conversation=conversation,
            member=member,
            last_message=last[0] if last else None,
            unread=unread,
            peer_user_id=await self._peer(conversation, member.user_id),
        )

    async def list_conversations(
        self, user_id: str, page_size: int, page_token: str, include_archived: bool
    ) -> tuple[list[ConversationState], str]:
        size = self._page_size(
            "page_size", page_size, self._limits.default_page, self._limits.max_page
        )
        after: tuple[float, str] | None = None
        if page_token:
            try:
                stamp, _, cid = page_token.partition("|")
                after = (float(stamp), cid)
            except ValueError as exc:
                raise _invalid("page_token is not one this service issued") from exc
        rows: list[tuple[ConversationRecord, MemberRecord]] = []
        for member in await self._store.user_conversations(user_id):
            conversation = await self._store.get_conversation(member.conversation_id)
            if conversation is None or (conversation.archived and not include_archived):
                continue
            rows.append((conversation, member))
        # Most recently active first; the id breaks ties so pages never overlap.
        rows.sort(key=lambda r: (-r[0].updated_at, r[0].conversation_id))
        if after is not None:
            rows = [
                r for r in rows if (-r[0].updated_at, r[0].conversation_id) > (-after[0], after[1])
            ]
        page = rows[:size]
        states = [await self._state(c, m) for c, m in page]
        token = ""
        if len(rows) > size:
            last = page[-1][0]
            token = f"{last.updated_at!r}|{last.conversation_id}"
        return states, token

    async def update_conversation(
        self, user_id: str, conversation_id: str, title: str | None, archived: bool | None
    ) -> ConversationRecord:
        conversation, member = await self.require_writer(conversation_id, user_id)
        self._require_manager(conversation, member)
        if title is not None and len(title) > self._limits.max_title_chars:
            raise _invalid(f"title must be at most {self._limits.max_title_chars} characters")
        now = self._clock.now()
        updated = await self._store.update_conversation(conversation_id, title, archived, now)
        event = events_pb2.ConversationEvent(
            conversation_id=conversation_id, occurred_at=convert.timestamp(now), actor_id=user_id
        )
        event.conversation_updated.conversation.CopyFrom(convert.conversation(updated))
        await self._events.emit(updated, [event])
        return updated

    async def set_muted(self, user_id: str, conversation_id: str, muted: bool) -> MemberRecord:
        await self.require_member(conversation_id, user_id)
        return await self._store.set_muted(conversation_id, user_id, muted)

    # Membership

    async def list_members(
        self, user_id: str, conversation_id: str, page_size: int, page_token: str
    ) -> tuple[list[MemberRecord], str]:
        await self.require_member(conversation_id, user_id)
        limits = self._limits
        size = self._page_size(
            "page_size", page_size, limits.default_member_page, limits.max_member_page
        )
        members = await self._store.list_members(conversation_id, page_token, size + 1)
        token = members[size - 1].user_id if len(members) > size else ""
        return members[:size], token

    async def _apply_membership(
        self,
        conversation: ConversationRecord,
        actor_id: str,
        changes: Sequence[MembershipChange],
    ) -> list[EventRecord]:
        events = await self._store.change_members(
            conversation.conversation_id, actor_id, changes, self._clock.now()
        )
        await self._events.emit(conversation, events)
        return events

    async def add_members(
        self, user_id: str, conversation_id: str, user_ids: Sequence[str], role: int
    ) -> list[EventRecord]:
        conversation, member = await self.require_writer(conversation_id, user_id)
        self._require_manager(conversation, member)
        if conversation.archived:
            raise _precondition(f"conversation {conversation_id} is archived")
        role = role or Role.MEMBER
        if role == Role.OWNER or role not in (Role.ADMIN, Role.MEMBER):
            raise _invalid("role must be ROLE_MEMBER or ROLE_ADMIN")
        if role == Role.ADMIN and member.role != Role.OWNER:
            raise _denied("only the owner adds admins")
        if not user_ids:
            raise _invalid("user_ids must name at least one user")
        wanted: list[str] = []
        for uid in user_ids:
            _check_id("user_ids", uid)
            if uid not in wanted:
                wanted.append(uid)
        if conversation.kind == Kind.GROUP:
            present = set(await self._store.member_ids(conversation_id))
            joining = [u for u in wanted if u not in present]
            if len(present) + len(joining) > self._limits.max_group_members:
                raise _precondition(f"a group has at most {self._limits.max_group_members} members")
        for uid in wanted:
            if await self._store.is_blocked(uid, user_id):
                raise _denied(f"{uid} has blocked you")
            if await self._store.get_ban(conversation_id, uid) is not None:
                raise _denied(
                    f"user_ids: {uid} is banned from conversation {conversation_id} by the"
                    " moderators"
                )
        _charge(self._invites, user_id, len(wanted), "members added")
        changes = [MembershipChange(uid, EventKind.MEMBER_ADDED, Role(role)) for uid in wanted]
        events = await self._apply_membership(conversation, user_id, changes)
        await self._undo_banned_adds(conversation, events)
        return events

    async def _undo_banned_adds(
        self, conversation: ConversationRecord, events: Sequence[EventRecord]
    ) -> None:
        """A ban that landed between the check above and the add: the ban's own removal saw no
        member, so the add removes the user again (in the moderator's name)."""
        for event in events:
            ban = await self._store.get_ban(conversation.conversation_id, event.member_user_id)
            if ban is not None:
                removal = [MembershipChange(event.member_user_id, EventKind.MEMBER_REMOVED)]
                await self._apply_membership(conversation, ban.banned_by, removal)

    async def remove_member(self, user_id: str, conversation_id: str, target: str) -> int:
        conversation, member = await self.require_writer(conversation_id, user_id)
        self._require_manager(conversation, member)
        _check_id("user_id", target)
        if target == user_id:
            raise _invalid("to remove yourself, leave the conversation")
        target_member = await self._store.get_member(conversation_id, target)
        if target_member is None:
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"{target} is not a member")
        if target_member.role == Role.OWNER:
            raise _denied("the owner cannot be removed")
        if target_member.role == Role.ADMIN and member.role != Role.OWNER:
            raise _denied("only the owner removes admins")
        events = await self._apply_membership(
            conversation, user_id, [MembershipChange(target, EventKind.MEMBER_REMOVED)]
        )
        return events[-1].seq if events else 0

    async def set_member_role(
        self, user_id: str, conversation_id: str, target: str, role: int
    ) -> tuple[MemberRecord, int]:
        conversation, member = await self.require_writer(conversation_id, user_id)
        self._require_manager(conversation, member)
        _check_id("user_id", target)
        if role not in (Role.OWNER, Role.ADMIN, Role.MEMBER):
            raise _invalid("role must be ROLE_OWNER, ROLE_ADMIN or ROLE_MEMBER")
        if member.role != Role.OWNER:
            raise _denied("only the owner changes roles")
        target_member = await self._store.get_member(conversation_id, target)
        if target_member is None:
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"{target} is not a member")
        if target == user_id:
            raise _invalid("the owner hands over ownership by giving another member ROLE_OWNER")
        changes = [MembershipChange(target, EventKind.MEMBER_ROLE_CHANGED, Role(role))]
        if role == Role.OWNER:
            # One owner at a time: handing over ownership makes the old owner an admin.
            changes.append(MembershipChange(user_id, EventKind.MEMBER_ROLE_CHANGED, Role.ADMIN))
        events = await self._apply_membership(conversation, user_id, changes)
        updated = await self._store.get_member(conversation_id, target)
        assert updated is not None
        return updated, (events[0].seq if events else 0)

    async def leave(self, user_id: str, conversation_id: str) -> int:
        conversation, member = await self.require_member(conversation_id, user_id)
        if conversation.kind == Kind.DIRECT:
            raise _precondition("a direct conversation cannot be left; block the user instead")
        changes = await self.handover(member)
        changes.append(MembershipChange(user_id, EventKind.MEMBER_LEFT))
        events = await self._apply_membership(conversation, user_id, changes)
        return events[-1].seq if events else 0

    async def handover(self, leaving: MemberRecord) -> list[MembershipChange]:
        """When the owner goes (leaves or is removed by a moderator), the group keeps an owner:
        the longest-serving admin, else the longest member."""
        if leaving.role != Role.OWNER:
            return []
        members = await self._all_members(leaving.conversation_id)
        others = [m for m in members if m.user_id != leaving.user_id]
        if not others:
            return []
        heir = min(others, key=lambda m: (m.role != Role.ADMIN, m.joined_at, m.user_id))
        return [MembershipChange(heir.user_id, EventKind.MEMBER_ROLE_CHANGED, Role.OWNER)]

    async def apply_membership(
        self,
        conversation: ConversationRecord,
        actor_id: str,
        changes: Sequence[MembershipChange],
    ) -> list[EventRecord]:
        """Writes membership changes and hands their events to the sink (moderators' too)."""
        return await self._apply_membership(conversation, actor_id, changes)

    async def _all_members(self, conversation_id: str) -> list[MemberRecord]:
        members: list[MemberRecord] = []
        after = ""
        while True:
            page = await self._store.list_members(conversation_id, after, 1000)
            members.extend(page)
            if len(page) < 1000:
                return members
            after = page[-1].user_id

    # Messages

    def _check_body(self, body: str, allow_empty: bool) -> None:
        if not body and not allow_empty:
            raise _invalid("body must not be empty")
        # Encoding is only needed when the body could be over the limit (4 bytes per char max).
        if len(body) * 4 > self._limits.max_body_bytes:
            size = len(body.encode("utf-8", "surrogatepass"))
            if size > self._limits.max_body_bytes:
                raise _invalid(
                    f"body is {size} bytes; the limit is {self._limits.max_body_bytes} bytes"
                )

    async def send(
        self,
        user_id: str,
        conversation_id: str,
        client_msg_id: str,
        body: str,
        kind: int,
        attachments: Sequence[str],
        reply_to_seq: int,
        mentions: Sequence[str] = (),
    ) -> SendResult:
        _check_id("client_msg_id", client_msg_id)
        kind = kind or MESSAGE_KIND_TEXT
        if kind not in (MESSAGE_KIND_TEXT, MESSAGE_KIND_MEDIA):
            raise _invalid("kind must be MESSAGE_KIND_TEXT or MESSAGE_KIND_MEDIA")
        if len(attachments) > self._limits.max_attachments:
            raise _invalid(f"attachments: at most {self._limits.max_attachments}")
        for media_id in attachments:
            _check_id("attachments", media_id)
        if len(set(attachments)) != len(attachments):
            raise _invalid("attachments: a media id is attached twice")
        self._check_body(body, allow_empty=bool(attachments))
        mentioned = tuple(dict.fromkeys(mentions))
        if len(mentioned) > self._limits.max_mentions:
            raise _invalid(f"mentions: at most {self._limits.max_mentions} users")
        for mentioned_id in mentioned:
            _check_id("mentions", mentioned_id)
        conversation, role = await self.require_sender(conversation_id, user_id)
        await self._require_writable(conversation, user_id)
        if conversation.kind == Kind.CHANNEL and role == Role.MEMBER:
            raise _denied("only the owner and admins post in a channel")
        if reply_to_seq:
            target = await self._store.get_message(conversation_id, min(reply_to_seq, MAX_SEQ))
            if target is None:
                raise _invalid(f"reply_to_seq {reply_to_seq} is not a message in this conversation")
        for mentioned_id in mentioned:
            if await self._store.get_member(conversation_id, mentioned_id) is None:
                raise _invalid(f"mentions: {mentioned_id} is not a member of this conversation")
        held_by = await self._screen_body(conversation, user_id, body, may_hold=True)
        info = await self._attachments.resolve(user_id, conversation_id, attachments)
        now = self._clock.now()
        new = NewMessage(
            conversation_id=conversation_id,
            sender_id=user_id,
            client_msg_id=client_msg_id,
            message_id=new_id(now),
            created_at=now,
            kind=kind,
            body=body,
            attachments=tuple(attachments),
            reply_to_seq=reply_to_seq,
            attachment_info=tuple(info),
            mentions=mentioned,
        )
        if held_by:
            return await self._hold(new, held_by)
        result = await self._store.append_message(new)
        if not result.duplicate:
            await self.publish_created(conversation, result.message)
        return SendResult(result.message, result.duplicate)

    async def _hold(self, new: NewMessage, reason: str) -> SendResult:
        """Stores the message aside for review; a retry gets the same answer, the released
        message once released, and a refusal once dropped."""
        record, created = await self._store.hold_message(new, reason, self._clock.now())
        if record.state == HeldState.DROPPED:
            raise _invalid(f"message rejected by moderation: dropped after review ({reason})")
        if record.state == HeldState.RELEASED:
            # Appended by the release under the same key: this finds it.
            result = await self._store.append_message(record.message)
            return SendResult(result.message, duplicate=True)
        return SendResult(record.pending_view(), duplicate=not created, held=True)

    async def publish_created(
        self, conversation: ConversationRecord, message: MessageRecord
    ) -> None:
        """Hands a new message's event to the sink (a send's, or a released held message's)."""
        record = EventRecord(
            conversation_id=conversation.conversation_id,
            seq=message.seq,
            kind=EventKind.MESSAGE_CREATED,
            actor_id=message.sender_id,
            occurred_at=message.created_at,
            message=message,
        )
        await self._events.emit(conversation, [record])

    async def _own_message(
        self, user_id: str, conversation_id: str, seq: int
    ) -> tuple[ConversationRecord, Role, MessageRecord]:
        if seq <= 0:
            raise _invalid("message_seq is required")
        conversation, role = await self.require_sender(conversation_id, user_id)
        message = await self._store.get_message(conversation_id, min(seq, MAX_SEQ))
        if message is None:
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"message {seq} not found")
        return conversation, role, message

    async def edit(self, user_id: str, conversation_id: str, seq: int, body: str) -> EventRecord:
        self._check_body(body, allow_empty=False)
        conversation, _role, message = await self._own_message(user_id, conversation_id, seq)
        if message.sender_id != user_id:
            raise _denied("only the sender edits a message")
        if message.deleted:
            raise _precondition(f"message {seq} is deleted")
        await self._require_writable(conversation, user_id)
        await self._screen_body(conversation, user_id, body, may_hold=False)
        record = await self._store.edit_message(
            conversation_id, seq, user_id, body, self._clock.now()
        )
        await self._events.emit(conversation, [record])
        return record

    async def delete(
        self, user_id: str, conversation_id: str, seq: int
    ) -> EventRecord | MessageRecord:
        """The delete event, or the tombstone itself when the message was already deleted."""
        conversation, role, message = await self._own_message(user_id, conversation_id, seq)
        if message.sender_id != user_id and not (
            conversation.kind != Kind.DIRECT and role in (Role.OWNER, Role.ADMIN)
        ):
            raise _denied("only the sender, or the owner or an admin, deletes a message")
        if message.deleted:
            return message
        if conversation.archived:
            raise _precondition(f"conversation {conversation_id} is archived")
        record = await self._store.delete_message(conversation_id, seq, user_id, self._clock.now())
        await self._events.emit(conversation, [record])
        return record

    async def history(
        self,
        user_id: str,
        conversation_id: str,
        before_seq: int,
        after_seq: int,
        limit: int,
        direction: int = 0,
    ) -> tuple[list[MessageRecord], bool, int]:
        """A page of messages in (after_seq, before_seq); `direction` is a HistoryDirection
        value of the API, 0 (unspecified) meaning what clients that send none have always got:
        oldest first when only after_seq is given, else newest first."""
        size = self._page_size("limit", limit, self._limits.default_page, self._limits.max_page)
        if before_seq and after_seq and after_seq >= before_seq - 1:
            raise _invalid("after_seq must be below before_seq - 1")
        if direction == 0:
            forward = after_seq > 0 and before_seq == 0
            order = HistoryDirection.FORWARD if forward else HistoryDirection.BACKWARD
        elif direction in (HistoryDirection.BACKWARD, HistoryDirection.FORWARD):
            order = HistoryDirection(direction)
        else:
            raise _invalid(f"direction must be BACKWARD, FORWARD or unspecified, got {direction}")
        conversation, _member = await self.require_member(conversation_id, user_id)
        before_seq, after_seq = min(before_seq, MAX_SEQ), min(after_seq, MAX_SEQ)
        rows = await self._store.history(conversation_id, before_seq, after_seq, size + 1, order)
        return rows[:size], len(rows) > size, conversation.last_seq

    # Receipts

    async def mark(
        self, user_id: str, conversation_id: str, seq: int, read: bool
    ) -> tuple[MemberRecord, int]:
        """Moves the read (or delivered) marker forward; returns the member and unread count."""
        conversation, member = await self.require_member(conversation_id, user_id)
        # A marker never passes the log's end: later messages must still count as unread.
        target = min(seq, conversation.last_seq)
        current = member.last_read_seq if read else member.last_delivered_seq
        if target > current:
            if read:
                member = await self._store.mark_read(conversation_id, user_id, target)
            else:
                member = await self._store.mark_delivered(conversation_id, user_id, target)
            await self._publish_receipt(conversation, member)
        unread = await self._store.count_unread(conversation_id, user_id, member.last_read_seq)
        return member, unread

    async def _publish_receipt(
        self, conversation: ConversationRecord, member: MemberRecord
    ) -> None:
        event = events_pb2.ConversationEvent(
            conversation_id=conversation.conversation_id,
            occurred_at=convert.timestamp(self._clock.now()),
            actor_id=member.user_id,
        )
        receipt = event.receipt_moved
        receipt.user_id = member.user_id
        receipt.last_read_seq = member.last_read_seq
        receipt.last_delivered_seq = member.last_delivered_seq
        if conversation.kind == Kind.CHANNEL:
            # Large channels: per-reader receipts go only to the reader's own devices.
            recipients = [member.user_id]
        else:
            recipients = [
                uid
                for uid in await self._store.member_ids(conversation.conversation_id)
                if uid == member.user_id or not await self._store.is_blocked(member.user_id, uid)
            ]
        await self._events.emit(conversation, [event], recipients)

    # Blocks

    async def set_block(self, user_id: str, target: str, blocked: bool) -> None:
        _check_id("user_id", target)
        if target == user_id:
            raise _invalid("user_id must be another user")
        await self._store.set_block(user_id, target, blocked)

    async def list_blocked(self, user_id: str) -> list[str]:
        return await self._store.list_blocked(user_id)
