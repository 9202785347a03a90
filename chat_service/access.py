"""AccessService: who may see a user's presence and typing, and who a message may push to,
answered from chat's own data.

presence_service and notify_service own no membership or block data; they ask here with their
service tokens (scope `chat.access`, see chatmesh_common.credentials), naming the user each
question is about (presence caches answers for a few seconds). User tokens cannot call this
service. Answers are computed from the store at the time of the call (SPEC guarantee 5).

Register it next to ChatService with `access_registration(chat, authenticator)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import access_service_pb2_grpc

from chatmesh_common.auth import ServiceIdentity
from chatmesh_common.grpc_server import Registration
from chatmesh_common.limits import LIMITS, Limits
from chatmesh_common.rpc import Authenticator, RpcServicer, check_id, invalid, unary

from . import convert
from .chat import Chat
from .servicer import STORE_ERRORS
from .store.base import ConversationRecord, MessageRecord, NotFoundError

# The most messages one GetSearchHits call re-reads (a page of search hits).
MAX_SEARCH_REFS = 100

# The most users one GetUnreadTotals call counts for.
MAX_UNREAD_USERS = 1000
# Members read per page for a push audience (and block checks asked at once).
_AUDIENCE_PAGE = 100
_UNREAD_AT_ONCE = 20

ACCESS_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AccessService"].full_name


class Access:
    """The access rules for presence and typing, over `Chat` and its store."""

    def __init__(self, chat: Chat) -> None:
        self._chat = chat

    async def visible_subjects(self, viewer: str, subjects: Sequence[str]) -> list[str]:
        """The subjects whose presence `viewer` may see, in the order given, without repeats.

        A subject is visible to itself, and to a viewer who shares a conversation with it unless
        the subject has blocked the viewer.
        """
        store = self._chat.store
        wanted = list(dict.fromkeys(subjects))
        viewer_conversations: set[str] | None = None
        visible = []
        for subject in wanted:
            if subject == viewer:
                visible.append(subject)
                continue
            if viewer_conversations is None:
                viewer_conversations = {
                    m.conversation_id for m in await store.user_conversations(viewer)
                }
            # Memberships of both sides rather than member lists: a large channel's member list
            # is never read here.
            subject_conversations = {
                m.conversation_id for m in await store.user_conversations(subject)
            }
            if viewer_conversations & subject_conversations and not await store.is_blocked(
                subject, viewer
            ):
                visible.append(subject)
        return visible

    async def typing_audience(self, typer: str, conversation_id: str) -> list[str]:
        """Members who get `typer`'s typing in the conversation; PERMISSION_DENIED for non-members
        and, naming the suspension, for a suspended typer (typing is a write others receive).

        Excludes the typer, users the typer blocked, and users who blocked the typer.
        """
        await self._chat.require_writer(conversation_id, typer)
        store = self._chat.store
        recipients = []
        for member in await store.member_ids(conversation_id):
            if member == typer:
                continue
            if await store.is_blocked(typer, member) or await store.is_blocked(member, typer):
                continue
            recipients.append(member)
        return recipients

    async def require_active(self, user_id: str) -> None:
        """PERMISSION_DENIED naming the suspension when the moderators suspended the user."""
        await self._chat.require_active(user_id)

    async def searchable_conversations(self, user_id: str) -> list[str]:
        """The conversations `user_id` is a member of now."""
        return [m.conversation_id for m in await self._chat.store.user_conversations(user_id)]

    async def search_hits(
        self, user_id: str, refs: Sequence[tuple[str, int]]
    ) -> list[MessageRecord]:
        """The current, undeleted messages among `refs` that `user_id` may find now.

        A message whose sender `user_id` has blocked is left out, in every kind of conversation
        (the rule pushes follow: `blocked_sender`). History is unchanged, so a direct
        conversation with a blocked user still shows in search through the searcher's own
        messages; unblocking brings the other side's messages back.
        """
        store = self._chat.store
        member_of: dict[str, bool] = {}
        blocked: dict[str, bool] = {}
        found = []
        for conversation_id, seq in refs:
            if conversation_id not in member_of:
                member = await store.get_member(conversation_id, user_id)
                member_of[conversation_id] = member is not None
            if not member_of[conversation_id]:
                continue
            record = await store.get_message(conversation_id, seq)
            if record is None or record.deleted:
                continue
            sender = record.sender_id
            if sender != user_id:
                if sender not in blocked:
                    blocked[sender] = await store.is_blocked(user_id, sender)
                if blocked[sender]:
                    continue
            found.append(record)
        return found

    async def push_audience(
        self, conversation_id: str, seq: int
    ) -> tuple[ConversationRecord, MessageRecord, list[pb.PushAudienceMember]]:
        """The conversation, the message at `seq` now, and each member but its sender."""
        store = self._chat.store
        conversation = await store.get_conversation(conversation_id)
        message = await store.get_message(conversation_id, seq) if conversation else None
        if conversation is None or message is None:
            raise NotFoundError(f"no message {seq} in conversation {conversation_id!r}")
        sender = message.sender_id
        members: list[pb.PushAudienceMember] = []
        # Pages of member records: one read per page, not one per member.
        after = ""
        while page := await store.list_members(conversation_id, after, _AUDIENCE_PAGE):
            after = page[-1].user_id
            others = [m for m in page if m.user_id != sender]
            # Asked together: on a cluster store each is a round trip of its own.
            blocked = await asyncio.gather(*(store.is_blocked(m.user_id, sender) for m in others))
            members.extend(
                pb.PushAudienceMember(
                    user_id=m.user_id,
                    blocked_sender=b,
                    muted=m.muted,
                    last_read_seq=m.last_read_seq,
                )
                for m, b in zip(others, blocked, strict=True)
            )
            if len(page) < _AUDIENCE_PAGE:
                break
        return conversation, message, members

    async def unread_total(self, user_id: str) -> int:
        """Unread messages over all of `user_id`'s conversations (SPEC guarantee 7)."""
        store = self._chat.store
        total = 0
        for member in await store.user_conversations(user_id):
            total += await store.count_unread(member.conversation_id, user_id, member.last_read_seq)
        return total

    async def membership(self, user_id: str, conversation_id: str) -> int | None:
        """The conversation's kind when `user_id` is a member of it now, else None."""
        store = self._chat.store
        if await store.get_member(conversation_id, user_id) is None:
            return None
        conversation = await store.get_conversation(conversation_id)
        return None if conversation is None else int(conversation.kind)


class AccessServicer(RpcServicer, access_service_pb2_grpc.AccessServiceServicer):
    SERVICE = ACCESS_SERVICE_NAME
    ERRORS = STORE_ERRORS

    def __init__(
        self, access: Access, authenticator: Authenticator, limits: Limits = LIMITS
    ) -> None:
        super().__init__(authenticator)
        self.access = access
        self.limits = limits

    @unary
    async def FilterPresenceAudience(
        self, request: pb.FilterPresenceAudienceRequest, _caller: ServiceIdentity
    ) -> pb.FilterPresenceAudienceResponse:
        check_id("viewer_user_id", request.viewer_user_id)
        most = self.limits.max_access_subjects
        if len(request.subject_user_ids) > most:
            raise invalid(f"subject_user_ids must hold at most {most} ids")
        visible = await self.access.visible_subjects(
            request.viewer_user_id, request.subject_user_ids
        )
        return pb.FilterPresenceAudienceResponse(visible_user_ids=visible)

    @unary
    async def CheckTypingAudience(
        self, request: pb.CheckTypingAudienceRequest, _caller: ServiceIdentity
    ) -> pb.CheckTypingAudienceResponse:
        check_id("user_id", request.user_id)
        recipients = await self.access.typing_audience(request.user_id, request.conversation_id)
        return pb.CheckTypingAudienceResponse(recipient_ids=recipients)

    @unary
    async def ListSearchableConversations(
        self, request: pb.ListSearchableConversationsRequest, _caller: ServiceIdentity
    ) -> pb.ListSearchableConversationsResponse:
        check_id("user_id", request.user_id)
        conversations = await self.access.searchable_conversations(request.user_id)
        return pb.ListSearchableConversationsResponse(conversation_ids=conversations)

    @unary
    async def GetSearchHits(
        self, request: pb.GetSearchHitsRequest, _caller: ServiceIdentity
    ) -> pb.GetSearchHitsResponse:
        check_id("user_id", request.user_id)
        if len(request.refs) > MAX_SEARCH_REFS:
            raise invalid(f"refs must hold at most {MAX_SEARCH_REFS} messages")
        records = await self.access.search_hits(
            request.user_id, [(r.conversation_id, r.seq) for r in request.refs]
        )
        return pb.GetSearchHitsResponse(messages=[convert.message(r) for r in records])

    @unary
    async def GetPushAudience(
        self, request: pb.GetPushAudienceRequest, _caller: ServiceIdentity
    ) -> pb.GetPushAudienceResponse:
        check_id("conversation_id", request.conversation_id)
        if request.seq < 1:
            raise invalid("seq is required")
        conversation, message, members = await self.access.push_audience(
            request.conversation_id, request.seq
        )
        return pb.GetPushAudienceResponse(
            conversation=convert.conversation(conversation),
            message=convert.message(message),
            members=members,
        )

    @unary
    async def GetUnreadTotals(
        self, request: pb.GetUnreadTotalsRequest, _caller: ServiceIdentity
    ) -> pb.GetUnreadTotalsResponse:
        if len(request.user_ids) > MAX_UNREAD_USERS:
            raise invalid(f"user_ids must hold at most {MAX_UNREAD_USERS} ids")
        for user_id in request.user_ids:
            check_id("user_ids", user_id)
        totals: list[pb.UnreadTotal] = []
        # A few users at once: on a cluster store each total is several round trips.
        for start in range(0, len(request.user_ids), _UNREAD_AT_ONCE):
            chunk = request.user_ids[start : start + _UNREAD_AT_ONCE]
            counts = await asyncio.gather(*(self.access.unread_total(u) for u in chunk))
            totals.extend(
                pb.UnreadTotal(user_id=u, unread=n) for u, n in zip(chunk, counts, strict=True)
            )
        return pb.GetUnreadTotalsResponse(totals=totals)

    @unary
    async def CheckMembership(
        self, request: pb.CheckMembershipRequest, _caller: ServiceIdentity
    ) -> pb.CheckMembershipResponse:
        check_id("user_id", request.user_id)
        check_id("conversation_id", request.conversation_id)
        kind = await self.access.membership(request.user_id, request.conversation_id)
        if kind is None:
            return pb.CheckMembershipResponse(member=False)
        return pb.CheckMembershipResponse(member=True, kind=kind)  # type: ignore[arg-type]

    @unary
    async def CheckUserActive(
        self, request: pb.CheckUserActiveRequest, _caller: ServiceIdentity
    ) -> pb.CheckUserActiveResponse:
        check_id("user_id", request.user_id)
        await self.access.require_active(request.user_id)
        return pb.CheckUserActiveResponse()


def access_registration(chat: Chat, authenticator: Authenticator) -> Registration:
    """The AccessService servicer, for chat_service's server (or the shared dev server)."""
    return (
        access_service_pb2_grpc.add_AccessServiceServicer_to_server,
        AccessServicer(Access(chat), authenticator),
    )
