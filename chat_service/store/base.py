"""The chat storage interface: what chat_service needs from a store, free of any query language.

A conversation is one ordered log. Every durable change (a message, an edit, a delete, a membership
change) takes the next seq of its conversation: seqs start at 1 and are gapless. The store owns that
numbering and the idempotency of sends; the domain layer (chat_service.chat) owns the rules of who
may do what. Implementations: `sqlite.SqliteChatStore` (embedded default) and
`scylla.ScyllaChatStore` (the cluster store); `metrics.timed_operations` names and times every
operation of both.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Kind(enum.IntEnum):
    """Conversation kinds; values match chatmesh.chat.v1.ConversationKind."""

    DIRECT = 1
    GROUP = 2
    CHANNEL = 3


class Role(enum.IntEnum):
    """Member roles; values match chatmesh.chat.v1.Role."""

    OWNER = 1
    ADMIN = 2
    MEMBER = 3


class HistoryDirection(enum.IntEnum):
    """Which way a history page reads; values match chatmesh.chat.v1.HistoryDirection."""

    # Newest first: from just below before_seq (0: from the newest message) down.
    BACKWARD = 1
    # Oldest first: from just above after_seq (0: from the start of the log) up.
    FORWARD = 2


class EventKind(enum.IntEnum):
    MESSAGE_CREATED = 1
    MESSAGE_EDITED = 2
    MESSAGE_DELETED = 3
    MEMBER_ADDED = 4
    MEMBER_REMOVED = 5
    MEMBER_LEFT = 6
    MEMBER_ROLE_CHANGED = 7


class StoreError(Exception):
    """Base of the errors a store raises for a request it refuses."""


class NotFoundError(StoreError):
    pass


class NotMemberError(StoreError):
    """The writer is not a member at the time of the write (e.g. removed a moment before)."""


class ConflictError(StoreError):
    """The stored state does not allow the change (e.g. editing a deleted message)."""


class SuspendedError(StoreError):
    """The writer is suspended at the time of the write (e.g. suspended a moment before)."""


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    conversation_id: str
    kind: Kind
    title: str
    created_by: str
    created_at: float
    last_seq: int
    member_count: int
    archived: bool
    # The time of the newest event (or creation): orders a user's conversation list.
    updated_at: float
    # The retention horizon: the lowest seq still kept (1 until retention purged something;
    # last_seq + 1 when everything was purged). The log, history and unread start here; seqs
    # below it are gone for good and are never reused.
    first_seq: int = 1


@dataclass(frozen=True, slots=True)
class MemberRecord:
    conversation_id: str
    user_id: str
    role: Role
    joined_at: float
    last_read_seq: int
    last_delivered_seq: int
    muted: bool


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What media_service said of an attached media id when the message was sent."""

    media_id: str
    content_type: str
    size_bytes: int
    file_name: str
    width: int = 0
    height: int = 0
    blurhash: str = ""
    thumbnails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageRecord:
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    created_at: float
    kind: int
    body: str
    attachments: tuple[str, ...]
    reply_to_seq: int
    version: int
    edited_at: float | None
    deleted: bool
    client_msg_id: str
    # The metadata of `attachments`, in their order (empty for messages stored before media).
    attachment_info: tuple[AttachmentInfo, ...] = ()
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of a conversation's log.

    For message events `message` is the message as it stands now (an edit replayed later shows
    the latest version; a deleted message shows its tombstone, so no body survives a delete).
    For membership events `member_user_id` and `member_role` say who and what.
    """

    conversation_id: str
    seq: int
    kind: EventKind
    actor_id: str
    occurred_at: float
    message: MessageRecord | None = None
    member_user_id: str = ""
    member_role: Role | None = None
    # Membership events as returned by change_members: the member count right after this change
    # (fanout and streams use it to notice a conversation crossing the fan-out-on-read
    # threshold). 0 when unknown, e.g. in events_after replays.
    member_count: int = 0


class ReportStatus(enum.IntEnum):
    """Where a report stands; values match chatmesh.chat.v1.ReportStatus."""

    OPEN = 1
    RESOLVED = 2


@dataclass(frozen=True, slots=True)
class NewReport:
    """A member's report of a message (message_seq > 0) or of a user (message_seq 0)."""

    report_id: str
    reporter_id: str
    reason: int
    details: str
    conversation_id: str
    message_seq: int
    message_id: str
    # The reported user: the sender of a reported message.
    user_id: str
    created_at: float

    def target_key(self) -> str:
        """What is reported: one report per reporter and key (reports are idempotent)."""
        if self.message_seq:
            return f"m/{self.conversation_id}/{self.message_seq}"
        return f"u/{self.user_id}/{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class ReportRecord:
    report_id: str
    reporter_id: str
    reason: int
    details: str
    conversation_id: str
    message_seq: int
    message_id: str
    user_id: str
    created_at: float
    status: ReportStatus
    resolved_by: str = ""
    resolved_at: float | None = None
    resolution: str = ""


@dataclass(frozen=True, slots=True)
class BanRecord:
    """A user kept out of one conversation until unbanned."""

    conversation_id: str
    user_id: str
    banned_by: str
    banned_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class SuspensionRecord:
    """A user whose sends and writes are refused in every conversation until unsuspended."""

    user_id: str
    suspended_by: str
    suspended_at: float
    reason: str

    def refusal(self) -> str:
        """What a refused write of the suspended user is told."""
        reason = f": {self.reason}" if self.reason else ""
        return f"user {self.user_id} is suspended by the moderators{reason}"


def refuses_suspended(actor_id: str, changes: Sequence[MembershipChange]) -> bool:
    """Whether a membership change by `actor_id` is refused while the actor is suspended:
    every change but leaving (with the owner's handover that goes with it)."""
    return not any(c.kind == EventKind.MEMBER_LEFT and c.user_id == actor_id for c in changes)


class HeldState(enum.IntEnum):
    """Where a message held by the channel screen stands."""

    PENDING = 1
    RELEASED = 2
    DROPPED = 3


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A channel message the screen held for review: not in the log while PENDING; RELEASED
    means appended (with its own client_msg_id, so appending again finds it); DROPPED, never."""

    message: NewMessage
    reason: str
    held_at: float
    state: HeldState = HeldState.PENDING
    decided_by: str = ""

    def pending_view(self) -> MessageRecord:
        """The message as its sender and the moderators see it while held: no seq (0)."""
        new = self.message
        return MessageRecord(
            conversation_id=new.conversation_id,
            seq=0,
            message_id=new.message_id,
            sender_id=new.sender_id,
            created_at=new.created_at,
            kind=new.kind,
            body=new.body,
            attachments=new.attachments,
            reply_to_seq=new.reply_to_seq,
            version=1,
            edited_at=None,
            deleted=False,
            client_msg_id=new.client_msg_id,
            attachment_info=new.attachment_info,
            mentions=new.mentions,
        )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """Events of one conversation written but not yet confirmed in the durable event stream.

    Every seq in from_seq..up_to_seq (inclusive) may be missing from JetStream; the relay
    re-reads them from the log with events_after and publishes them again.
    """

    conversation_id: str
    from_seq: int
    up_to_seq: int


@dataclass(frozen=True, slots=True)
class NewConversation:
    conversation_id: str
    kind: Kind
    title: str
    created_by: str
    created_at: float
    # Everyone in it at creation, the creator included. Creation itself takes no seq.
    members: Sequence[tuple[str, Role]]
    # For direct conversations: the sorted pair, so that a pair has one conversation.
    direct_key: str = ""

    def created(self) -> ConversationRecord:
        """The conversation as it stands right after its creation (no seq taken yet)."""
        return ConversationRecord(
            conversation_id=self.conversation_id,
            kind=self.kind,
            title=self.title,
            created_by=self.created_by,
            created_at=self.created_at,
            last_seq=0,
            member_count=len(self.members),
            archived=False,
            updated_at=self.created_at,
        )


@dataclass(frozen=True, slots=True)
class NewMessage:
    conversation_id: str
    sender_id: str
    client_msg_id: str
    message_id: str
    created_at: float
    kind: int
    body: str
    attachments: tuple[str, ...] = ()
    reply_to_seq: int = 0
    attachment_info: tuple[AttachmentInfo, ...] = ()
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    message: MessageRecord
    # True when (sender, conversation, client_msg_id) was seen before: nothing new was stored.
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MembershipChange:
    user_id: str
    kind: EventKind
    # The role after the change (for adds and role changes).
    role: Role | None = None


class ChatStore(Protocol):
    """What chat_service needs from a store. Every write is durable when its call returns."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # Conversations
    async def create_conversation(self, new: NewConversation) -> tuple[ConversationRecord, bool]:
        """Creates the conversation; for a direct_key that exists, returns that one and False.
        SuspendedError when the creator is suspended. (A creation racing the suspension may
        land, but the creator's writes in it are then refused like all others.)"""
        ...

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None: ...

    async def update_conversation(
        self, conversation_id: str, title: str | None, archived: bool | None, at: float
    ) -> ConversationRecord: ...

    # Members
    async def get_member(self, conversation_id: str, user_id: str) -> MemberRecord | None: ...

    async def member_role(
        self, conversation_id: str, user_id: str
    ) -> tuple[ConversationRecord, Role] | None:
        """The conversation and the user's role in it now; None when the conversation does not
        exist or the user is not a member; SuspendedError for a member a moderator suspended
        (on the cluster store: once the suspension reached this conversation, which it has
        when `set_suspension` returned). The access check of a send, cheaper than
        `get_conversation` + `get_member` + `get_suspension` (no read markers, no prefs)."""
        ...

    async def list_members(
        self, conversation_id: str, after_user_id: str, limit: int
    ) -> list[MemberRecord]:
        """Members ordered by user id, starting after `after_user_id`."""
        ...

    async def member_ids(self, conversation_id: str) -> list[str]: ...

    async def members_since(self, conversation_id: str, seq: int) -> list[str]:
        """The members as of the event at `seq` or as of a later one: the audience of that
        event's live fanout (`member_ids` is the members now). A store may answer from what it
        knows of its own log without a read."""
        ...

    async def user_conversations(self, user_id: str) -> list[MemberRecord]:
        """Every membership of a user."""
        ...

    async def change_members(
        self, conversation_id: str, actor_id: str, changes: Sequence[MembershipChange], at: float
    ) -> list[EventRecord]:
        """Applies adds, removals, leaves and role changes, each taking the next seq.

        Adding a present member or removing an absent one is skipped (no event). SuspendedError
        when the actor is suspended at the write, unless the actor is leaving
        (`refuses_suspended`).
        """
        ...

    async def set_muted(self, conversation_id: str, user_id: str, muted: bool) -> MemberRecord: ...

    # Messages and the log
    async def append_message(self, new: NewMessage) -> AppendResult:
        """Stores a message at the next seq, or returns the original for a retried key.

        Refuses with NotMemberError when the sender is not a member when the write happens, so a
        send racing the sender's removal never lands after it; and with SuspendedError when the
        sender is suspended when the write happens (checked in the write itself), so a send
        racing a suspension never lands after `set_suspension` returned. A retried key of a
        message stored before is still answered as a duplicate.
        """
        ...

    async def edit_message(
        self, conversation_id: str, seq: int, actor_id: str, body: str, at: float
    ) -> EventRecord:
        """Replaces the body and bumps version; ConflictError for a deleted message,
        NotMemberError when the actor is no longer a member, SuspendedError when the actor is
        suspended (as for append_message)."""
        ...

    async def delete_message(
        self, conversation_id: str, seq: int, actor_id: str, at: float, *, moderated: bool = False
    ) -> EventRecord:
        """Tombstones the message (body and attachments gone); deleting twice is a no-op event.
        NotMemberError when the actor is no longer a member and SuspendedError when the actor is
        suspended, unless `moderated` (a moderator's delete: the actor need not be a member)."""
        ...

    async def get_message(self, conversation_id: str, seq: int) -> MessageRecord | None: ...

    async def get_message_by_id(
        self, conversation_id: str, message_id: str
    ) -> MessageRecord | None:
        """The message of the conversation with that server message_id, as it stands now
        (a tombstone when deleted); None when no message of this conversation has it (or it
        was purged by retention)."""
        ...

    async def history(
        self,
        conversation_id: str,
        before_seq: int,
        after_seq: int,
        limit: int,
        direction: HistoryDirection = HistoryDirection.BACKWARD,
    ) -> list[MessageRecord]:
        """Up to `limit` messages with after_seq < seq < before_seq (before_seq 0: no upper
        bound), taken from the end `direction` starts at: BACKWARD newest first, FORWARD oldest
        first. after_seq 0 is a bound like any other (FORWARD from 0 starts at the log's start).
        """
        ...

    async def events_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[EventRecord]:
        """The log after a seq, oldest first."""
        ...

    # The outbox: the log's own record of what still has to reach the durable event stream
    async def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        """Up to `limit` conversations with events not yet relayed, any order.

        Contract: every write that takes a seq (append_message, edit_message, delete_message,
        change_members) records its seq in the outbox *in the same transaction*: a new entry
        starts with from_seq = up_to_seq = seq; an existing one keeps its from_seq and moves
        up_to_seq to seq. So an acknowledged event is never missing from the outbox until
        clear_outbox confirms it.
        """
        ...

    async def outbox_entry(self, conversation_id: str) -> OutboxEntry | None:
        """The pending entry of one conversation, if any (the relay's fast path)."""
        ...

    async def clear_outbox(self, relayed: Sequence[tuple[str, int]]) -> None:
        """Marks events up to each (conversation_id, up_to_seq) as relayed, in one write.

        An entry whose up_to_seq is still that value is deleted; one that moved on (newer
        events were written meanwhile) keeps its up_to_seq and gets from_seq = up_to_seq + 1
        (never lowered). Entries that are gone are ignored.
        """
        ...

    # Retention
    async def purge_expired(self, kind: Kind, before: float, limit: int) -> int:
        """Removes the expired start of the logs of conversations of `kind`; returns how many
        messages went.

        Per conversation, oldest first: the events from `first_seq` on whose time is before
        `before` (messages with their creation events, edits, deletes and membership events)
        are removed, up to `limit` messages in all, and `first_seq` moves to the first seq still
        kept. The log stays a gapless run from `first_seq` to `last_seq`; no seq is renumbered
        or reused. A conversation whose expired run is longer than what is left of `limit` is
        purged part way (its horizon stops at a message). A result below `limit` means nothing
        more is expired as of `before` (call again while it returns `limit`). Idempotent: a
        repeated or concurrent call removes nothing twice and the horizon only moves forward.
        """
        ...

    # Receipts and unread
    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> MemberRecord:
        """Moves last_read_seq forward to seq (never back); also moves last_delivered_seq."""
        ...

    async def mark_delivered(
        self, conversation_id: str, user_id: str, seq: int
    ) -> MemberRecord: ...

    async def count_unread(self, conversation_id: str, user_id: str, after_seq: int) -> int:
        """Messages after after_seq, by others, not deleted."""
        ...

    # Blocks
    async def set_block(self, user_id: str, blocked_user_id: str, blocked: bool) -> None: ...

    async def is_blocked(self, user_id: str, blocked_user_id: str) -> bool:
        """True when user_id has blocked blocked_user_id."""
        ...

    async def list_blocked(self, user_id: str) -> list[str]: ...

    # Moderation: reports, bans and suspensions (no seq; the actions they lead to write events)
    async def add_report(self, new: NewReport) -> tuple[ReportRecord, bool]:
        """Stores the report, or returns the reporter's earlier report of the same target
        (`NewReport.target_key`) and False; concurrent duplicates store one."""
        ...

    async def get_report(self, report_id: str) -> ReportRecord | None: ...

    async def list_reports(
        self, status: ReportStatus | None, after_report_id: str, limit: int
    ) -> list[ReportRecord]:
        """Up to `limit` reports with report_id > after_report_id, by report_id (oldest
        first); `status` None: every report."""
        ...

    async def resolve_report(
        self, report_id: str, resolved_by: str, resolution: str, at: float
    ) -> ReportRecord:
        """Marks the report resolved; NotFoundError when there is none. A resolved report is
        returned as it is (the first resolution stays)."""
        ...

    async def set_ban(self, ban: BanRecord) -> None:
        """Bans the user from the conversation (a ban that exists is replaced)."""
        ...

    async def remove_ban(self, conversation_id: str, user_id: str) -> None: ...

    async def get_ban(self, conversation_id: str, user_id: str) -> BanRecord | None: ...

    async def set_suspension(self, suspension: SuspensionRecord) -> None:
        """Suspends the user (a suspension that exists is replaced). Binding when it returns:
        from then on every write of the user that takes a seq, on any process of the store, is
        refused with SuspendedError, and a conversation creation by the user too."""
        ...

    async def remove_suspension(self, user_id: str) -> None: ...

    async def get_suspension(self, user_id: str) -> SuspensionRecord | None: ...

    # Messages held for review (no seq until released, when they are appended as any message)
    async def hold_message(
        self, new: NewMessage, reason: str, at: float
    ) -> tuple[HeldRecord, bool]:
        """Stores the held message, or returns the one held before for the same (sender,
        conversation, client_msg_id) and False; concurrent duplicates store one."""
        ...

    async def get_held(self, message_id: str) -> HeldRecord | None: ...

    async def list_held(self, after_message_id: str, limit: int) -> list[HeldRecord]:
        """Up to `limit` PENDING held messages with message_id > after_message_id, by id."""
        ...

    async def decide_held(self, message_id: str, state: HeldState, by: str) -> HeldRecord:
        """Moves a PENDING held message to RELEASED or DROPPED; the first decision stays (a
        decided one is returned as it is). NotFoundError when there is none."""
        ...
