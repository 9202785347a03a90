"""Reports and moderator actions: who may report what, and what a moderator's action writes.

Members report messages of conversations they belong to, and users (`report_message`,
`report_user`); a reporter's second report of the same target returns the first. Moderators
(a service token with scope `chat.moderate`, checked by the servicer) list and resolve
reports, delete any message, remove and ban members, and suspend users. Every action that
changes a conversation is an event of its log, written through the same store calls and event
sink as a member's own delete or removal: members see it live, and a removed user's streams
drop the conversation at once. A suspension is published on the user's suspension subject, so
their streams end on every replica.
"""

from __future__ import annotations

import dataclasses

import grpc

from chatmesh_common.bus import Bus
from chatmesh_common.clock import Clock
from chatmesh_common.ids import new_id
from chatmesh_common.ratelimit import RateLimiter
from chatmesh_common.rpc import RpcError, check_id, invalid, not_found, precondition
from chatmesh_common.subjects import suspension_subject

from .chat import MAX_SEQ, Chat
from .store.base import (
    BanRecord,
    ConversationRecord,
    EventKind,
    EventRecord,
    HeldRecord,
    HeldState,
    Kind,
    MembershipChange,
    MessageRecord,
    NewReport,
    ReportRecord,
    ReportStatus,
    SuspensionRecord,
)

# chatmesh.chat.v1.ReportReason: SPAM .. OTHER.
REPORT_REASONS = range(1, 8)
MAX_TEXT_CHARS = 1000
DEFAULT_REPORT_PAGE = 50
MAX_REPORT_PAGE = 200
REPORT_BURST = 10


def _check_text(field: str, value: str) -> None:
    if len(value) > MAX_TEXT_CHARS:
        raise invalid(f"{field} must be at most {MAX_TEXT_CHARS} characters, got {len(value)}")


def _check_reason(reason: int) -> None:
    if reason not in REPORT_REASONS:
        raise invalid("reason is required: a ReportReason other than REPORT_REASON_UNSPECIFIED")


class Moderation:
    def __init__(self, chat: Chat, bus: Bus, reports_per_hour: float = 0.0) -> None:
        self._chat = chat
        self._store = chat.store
        self._bus = bus
        self._clock: Clock = chat.clock
        self._reports = (
            RateLimiter(reports_per_hour / 3600.0, REPORT_BURST, self._clock.monotonic)
            if reports_per_hour > 0
            else None
        )

    # Reports (members)

    def _charge_report(self, user_id: str) -> None:
        if self._reports is None:
            return
        wait = self._reports.acquire(user_id, 1)
        if wait > 0:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit: too many reports; retry after {wait:.0f} s",
                retry_after_s=wait,
            )

    async def report_message(
        self,
        user_id: str,
        conversation_id: str,
        message_seq: int,
        message_id: str,
        reason: int,
        details: str,
    ) -> tuple[ReportRecord, bool]:
        """The report and whether it is new (False: the caller reported this message before).

        The message is named by its seq, by its message_id, or by both (then they must agree)."""
        _check_reason(reason)
        _check_text("details", details)
        if message_seq <= 0 and not message_id:
            raise invalid("message_seq or message_id is required")
        if message_id:
            check_id("message_id", message_id)
        conversation, _member = await self._chat.require_writer(conversation_id, user_id)
        field = "message_seq" if message_seq > 0 else "message_id"
        if message_seq > 0:
            message = await self._store.get_message(conversation_id, min(message_seq, MAX_SEQ))
            if message is None:
                raise not_found(f"message_seq {message_seq} is not a message in this conversation")
            if message_id and message_id != message.message_id:
                raise invalid(f"message_id {message_id} is not the message at seq {message_seq}")
        else:
            message = await self._store.get_message_by_id(conversation_id, message_id)
            if message is None:
                raise not_found(f"message_id {message_id} is not a message in this conversation")
        if message.sender_id == user_id:
            raise invalid(f"{field}: you cannot report your own message")
        if message.deleted:
            raise precondition(f"message {message_seq} is deleted")
        self._charge_report(user_id)
        return await self._store.add_report(
            NewReport(
                report_id=new_id(self._clock.now()),
                reporter_id=user_id,
                reason=reason,
                details=details,
                conversation_id=conversation.conversation_id,
                message_seq=message.seq,
                message_id=message.message_id,
                user_id=message.sender_id,
                created_at=self._clock.now(),
            )
        )

    async def report_user(
        self, user_id: str, target: str, conversation_id: str, reason: int, details: str
    ) -> tuple[ReportRecord, bool]:
        check_id("user_id", target)
        if target == user_id:
            raise invalid("user_id must be another user")
        _check_reason(reason)
        _check_text("details", details)
        if conversation_id:
            await self._chat.require_writer(conversation_id, user_id)
        else:
            await self._chat.require_active(user_id)
        self._charge_report(user_id)
        return await self._store.add_report(
            NewReport(
                report_id=new_id(self._clock.now()),
                reporter_id=user_id,
                reason=reason,
                details=details,
                conversation_id=conversation_id,
                message_seq=0,
                message_id="",
                user_id=target,
                created_at=self._clock.now(),
            )
        )

    # The queue (moderators)

    async def list_reports(
        self, status: int, page_size: int, page_token: str
    ) -> tuple[list[ReportRecord], str]:
        if status and status not in ReportStatus._value2member_map_:
            raise invalid(f"status must be a ReportStatus, got {status}")
        if page_size > MAX_REPORT_PAGE:
            raise invalid(f"page_size must be at most {MAX_REPORT_PAGE}, got {page_size}")
        if page_token:
            check_id("page_token", page_token)
        size = page_size or DEFAULT_REPORT_PAGE
        wanted = ReportStatus(status) if status else None
        rows = await self._store.list_reports(wanted, page_token, size + 1)
        page = rows[:size]
        return page, (page[-1].report_id if len(rows) > size else "")

    async def resolve_report(self, actor: str, report_id: str, resolution: str) -> ReportRecord:
        check_id("report_id", report_id)
        _check_text("resolution", resolution)
        return await self._store.resolve_report(report_id, actor, resolution, self._clock.now())

    # Actions on conversations (moderators)

    async def _conversation(self, conversation_id: str) -> ConversationRecord:
        check_id("conversation_id", conversation_id)
        conversation = await self._store.get_conversation(conversation_id)
        if conversation is None:
            raise not_found(f"conversation {conversation_id} not found")
        return conversation

    async def _group_or_channel(self, conversation_id: str) -> ConversationRecord:
        conversation = await self._conversation(conversation_id)
        if conversation.kind == Kind.DIRECT:
            raise precondition(
                f"conversation {conversation_id} is direct: it has no members to remove or ban;"
                " suspend the user instead"
            )
        return conversation

    async def delete_message(
        self, actor: str, conversation_id: str, seq: int
    ) -> EventRecord | MessageRecord:
        """The delete event, or the tombstone when the message was deleted already."""
        if seq <= 0:
            raise invalid("message_seq is required")
        conversation = await self._conversation(conversation_id)
        message = await self._store.get_message(conversation_id, min(seq, MAX_SEQ))
        if message is None:
            raise not_found(f"message {seq} not found")
        if message.deleted:
            return message
        record = await self._store.delete_message(
            conversation_id, seq, actor, self._clock.now(), moderated=True
        )
        await self._chat.events.emit(conversation, [record])
        return record

    async def remove_member(self, actor: str, conversation_id: str, target: str) -> int:
        conversation = await self._group_or_channel(conversation_id)
        check_id("user_id", target)
        seq = await self._remove(actor, conversation, target)
        if not seq:
            raise not_found(f"{target} is not a member of conversation {conversation_id}")
        return seq

    async def _remove(self, actor: str, conversation: ConversationRecord, target: str) -> int:
        """The seq of the removal; 0 when the user is not a member."""
        member = await self._store.get_member(conversation.conversation_id, target)
        if member is None:
            return 0
        changes = await self._chat.handover(member)
        changes.append(MembershipChange(target, EventKind.MEMBER_REMOVED))
        events = await self._chat.apply_membership(conversation, actor, changes)
        return events[-1].seq if events else 0

    async def ban_member(self, actor: str, conversation_id: str, target: str, reason: str) -> int:
        conversation = await self._group_or_channel(conversation_id)
        check_id("user_id", target)
        _check_text("reason", reason)
        # The ban first: an add racing the removal then finds it and is refused.
        await self._store.set_ban(
            BanRecord(conversation_id, target, actor, self._clock.now(), reason)
        )
        return await self._remove(actor, conversation, target)

    async def unban_member(self, conversation_id: str, target: str) -> None:
        await self._conversation(conversation_id)
        check_id("user_id", target)
        await self._store.remove_ban(conversation_id, target)

    # Users (moderators)

    async def suspend_user(self, actor: str, target: str, reason: str) -> None:
        check_id("user_id", target)
        _check_text("reason", reason)
        await self._store.set_suspension(SuspensionRecord(target, actor, self._clock.now(), reason))
        # Streams that start from now on see the stored suspension; those open end on this.
        await self._bus.publish(suspension_subject(target), reason.encode())

    async def unsuspend_user(self, target: str) -> None:
        check_id("user_id", target)
        await self._store.remove_suspension(target)

    # Channel messages held for review by the screen (moderators)

    async def list_held(self, page_size: int, page_token: str) -> tuple[list[HeldRecord], str]:
        if page_size > MAX_REPORT_PAGE:
            raise invalid(f"page_size must be at most {MAX_REPORT_PAGE}, got {page_size}")
        if page_token:
            check_id("page_token", page_token)
        size = page_size or DEFAULT_REPORT_PAGE
        rows = await self._store.list_held(page_token, size + 1)
        page = rows[:size]
        return page, (page[-1].message.message_id if len(rows) > size else "")

    async def _held(self, message_id: str) -> HeldRecord:
        check_id("message_id", message_id)
        held = await self._store.get_held(message_id)
        if held is None:
            raise not_found(f"no held message {message_id}")
        return held

    async def release_held(self, actor: str, message_id: str) -> MessageRecord:
        """Appends the held message to its log (taking the next seq then) and fans it out.
        Decided first, appended after under the sender's own key: a release retried after a
        crash between the two appends it once; a drop racing it loses (or wins, and nothing
        is appended)."""
        held = await self._held(message_id)
        if held.state == HeldState.PENDING:
            await self._require_sender_can_write(held)
        decided = await self._store.decide_held(message_id, HeldState.RELEASED, actor)
        if decided.state == HeldState.DROPPED:
            raise precondition(f"held message {message_id} was dropped")
        conversation = await self._conversation(held.message.conversation_id)
        result = await self._store.append_message(
            dataclasses.replace(held.message, created_at=self._clock.now())
        )
        if not result.duplicate:
            await self._chat.publish_created(conversation, result.message)
        return result.message

    async def _require_sender_can_write(self, held: HeldRecord) -> None:
        """Checked before deciding, so a message whose sender left or was suspended meanwhile
        stays pending (to be dropped) rather than released into a write the store refuses."""
        new = held.message
        try:
            await self._chat.require_writer(new.conversation_id, new.sender_id)
        except RpcError as exc:
            raise precondition(
                f"held message {new.message_id}: its sender cannot write there now"
                f" ({exc.message}); drop it instead"
            ) from exc

    async def drop_held(self, actor: str, message_id: str) -> None:
        await self._held(message_id)
        decided = await self._store.decide_held(message_id, HeldState.DROPPED, actor)
        if decided.state == HeldState.RELEASED:
            raise precondition(f"held message {message_id} was released")
