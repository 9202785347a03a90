"""gRPC servicers of chat_service: protos in and out, tokens verified, errors as status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc

from chatmesh_common.auth import Identity, auth_metadata
from chatmesh_common.bus import Bus
from chatmesh_common.grpc_server import Context
from chatmesh_common.rpc import Authenticator, RpcServicer, check_id, stream, unary

from . import convert
from .chat import Chat, ConversationState
from .moderation import Moderation
from .multiplex import MultiplexedStreams
from .store.base import (
    EventRecord,
    MessageRecord,
    NotFoundError,
    NotMemberError,
    StoreError,
    SuspendedError,
)
from .streams import EventStream, StreamOverflow, UserSuspended

log = logging.getLogger(__name__)

# What the store's refusals mean to a caller (matched along the exception's classes).
STORE_ERRORS: Mapping[type[Exception], grpc.StatusCode] = {
    NotMemberError: grpc.StatusCode.PERMISSION_DENIED,
    SuspendedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    StoreError: grpc.StatusCode.FAILED_PRECONDITION,
}


def _view(state: ConversationState) -> types_pb2.ConversationView:
    view = types_pb2.ConversationView(
        conversation=convert.conversation(state.conversation),
        role=int(state.member.role),  # type: ignore[arg-type]
        unread_count=state.unread,
        last_read_seq=state.member.last_read_seq,
        last_delivered_seq=state.member.last_delivered_seq,
        muted=state.member.muted,
        peer_user_id=state.peer_user_id,
    )
    if state.last_message is not None:
        view.last_message.CopyFrom(convert.message(state.last_message))
    return view


class ChatServicer(RpcServicer, chat_service_pb2_grpc.ChatServiceServicer):
    SERVICE = pb.DESCRIPTOR.services_by_name["ChatService"].full_name
    ERRORS = STORE_ERRORS

    def __init__(self, chat: Chat, moderation: Moderation, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.chat = chat
        self.moderation = moderation

    @unary
    async def CreateConversation(
        self, request: pb.CreateConversationRequest, who: Identity
    ) -> pb.CreateConversationResponse:
        state, created = await self.chat.create_conversation(
            who.user_id, request.kind, request.title, request.member_ids
        )
        return pb.CreateConversationResponse(conversation=_view(state), created=created)

    @unary
    async def GetConversation(
        self, request: pb.GetConversationRequest, who: Identity
    ) -> pb.GetConversationResponse:
        state = await self.chat.conversation_state(request.conversation_id, who.user_id)
        return pb.GetConversationResponse(conversation=_view(state))

    @unary
    async def ListConversations(
        self, request: pb.ListConversationsRequest, who: Identity
    ) -> pb.ListConversationsResponse:
        states, token = await self.chat.list_conversations(
            who.user_id, request.page_size, request.page_token, request.include_archived
        )
        return pb.ListConversationsResponse(
            conversations=[_view(s) for s in states], next_page_token=token
        )

    @unary
    async def UpdateConversation(
        self, request: pb.UpdateConversationRequest, who: Identity
    ) -> pb.UpdateConversationResponse:
        updated = await self.chat.update_conversation(
            who.user_id,
            request.conversation_id,
            request.title if request.HasField("title") else None,
            request.archived if request.HasField("archived") else None,
        )
        return pb.UpdateConversationResponse(conversation=convert.conversation(updated))

    @unary
    async def ListMembers(
        self, request: pb.ListMembersRequest, who: Identity
    ) -> pb.ListMembersResponse:
        members, token = await self.chat.list_members(
            who.user_id, request.conversation_id, request.page_size, request.page_token
        )
        return pb.ListMembersResponse(
            members=[convert.member(m) for m in members], next_page_token=token
        )

    @unary
    async def AddMembers(
        self, request: pb.AddMembersRequest, who: Identity
    ) -> pb.AddMembersResponse:
        events = await self.chat.add_members(
            who.user_id, request.conversation_id, request.user_ids, request.role
        )
        added = [
            types_pb2.Member(
                user_id=e.member_user_id,
                role=int(e.member_role or 0),  # type: ignore[arg-type]
                joined_at=convert.timestamp(e.occurred_at),
            )
            for e in events
        ]
        return pb.AddMembersResponse(added=added, last_seq=events[-1].seq if events else 0)

    @unary
    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, who: Identity
    ) -> pb.RemoveMemberResponse:
        seq = await self.chat.remove_member(who.user_id, request.conversation_id, request.user_id)
        return pb.RemoveMemberResponse(seq=seq)

    @unary
    async def SetMemberRole(
        self, request: pb.SetMemberRoleRequest, who: Identity
    ) -> pb.SetMemberRoleResponse:
        member, seq = await self.chat.set_member_role(
            who.user_id, request.conversation_id, request.user_id, request.role
        )
        return pb.SetMemberRoleResponse(member=convert.member(member), seq=seq)

    @unary
    async def LeaveConversation(
        self, request: pb.LeaveConversationRequest, who: Identity
    ) -> pb.LeaveConversationResponse:
        return pb.LeaveConversationResponse(
            seq=await self.chat.leave(who.user_id, request.conversation_id)
        )

    @unary
    async def UpdateMemberSettings(
        self, request: pb.UpdateMemberSettingsRequest, who: Identity
    ) -> pb.UpdateMemberSettingsResponse:
        if request.HasField("muted"):
            member = await self.chat.set_muted(who.user_id, request.conversation_id, request.muted)
        else:
            _conversation, member = await self.chat.require_member(
                request.conversation_id, who.user_id
            )
        return pb.UpdateMemberSettingsResponse(muted=member.muted)

    @unary
    async def SendMessage(
        self, request: pb.SendMessageRequest, who: Identity
    ) -> pb.SendMessageResponse:
        result = await self.chat.send(
            who.user_id,
            request.conversation_id,
            request.client_msg_id,
            request.body,
            request.kind,
            request.attachments,
            request.reply_to_seq,
            request.mentions,
        )
        return pb.SendMessageResponse(
            message=convert.message(result.message), duplicate=result.duplicate, held=result.held
        )

    @unary
    async def EditMessage(
        self, request: pb.EditMessageRequest, who: Identity
    ) -> pb.EditMessageResponse:
        record = await self.chat.edit(
            who.user_id, request.conversation_id, request.message_seq, request.body
        )
        assert record.message is not None
        return pb.EditMessageResponse(message=convert.message(record.message), event_seq=record.seq)

    @unary
    async def DeleteMessage(
        self, request: pb.DeleteMessageRequest, who: Identity
    ) -> pb.DeleteMessageResponse:
        outcome = await self.chat.delete(who.user_id, request.conversation_id, request.message_seq)
        if isinstance(outcome, MessageRecord):
            return pb.DeleteMessageResponse(message=convert.message(outcome), event_seq=0)
        assert isinstance(outcome, EventRecord) and outcome.message is not None
        return pb.DeleteMessageResponse(
            message=convert.message(outcome.message), event_seq=outcome.seq
        )

    @unary
    async def GetHistory(
        self, request: pb.GetHistoryRequest, who: Identity
    ) -> pb.GetHistoryResponse:
        messages, has_more, last_seq = await self.chat.history(
            who.user_id,
            request.conversation_id,
            request.before_seq,
            request.after_seq,
            request.limit,
            request.direction,
        )
        return pb.GetHistoryResponse(
            messages=[convert.message(m) for m in messages], has_more=has_more, last_seq=last_seq
        )

    @unary
    async def MarkRead(self, request: pb.MarkReadRequest, who: Identity) -> pb.MarkReadResponse:
        member, unread = await self.chat.mark(
            who.user_id, request.conversation_id, request.seq, read=True
        )
        return pb.MarkReadResponse(last_read_seq=member.last_read_seq, unread_count=unread)

    @unary
    async def MarkDelivered(
        self, request: pb.MarkDeliveredRequest, who: Identity
    ) -> pb.MarkDeliveredResponse:
        member, _unread = await self.chat.mark(
            who.user_id, request.conversation_id, request.seq, read=False
        )
        return pb.MarkDeliveredResponse(last_delivered_seq=member.last_delivered_seq)

    @unary
    async def BlockUser(self, request: pb.BlockUserRequest, who: Identity) -> pb.BlockUserResponse:
        await self.chat.set_block(who.user_id, request.user_id, True)
        return pb.BlockUserResponse()

    @unary
    async def UnblockUser(
        self, request: pb.UnblockUserRequest, who: Identity
    ) -> pb.UnblockUserResponse:
        await self.chat.set_block(who.user_id, request.user_id, False)
        return pb.UnblockUserResponse()

    @unary
    async def ListBlockedUsers(
        self, request: pb.ListBlockedUsersRequest, who: Identity
    ) -> pb.ListBlockedUsersResponse:
        return pb.ListBlockedUsersResponse(user_ids=await self.chat.list_blocked(who.user_id))

    @unary
    async def ReportMessage(
        self, request: pb.ReportMessageRequest, who: Identity
    ) -> pb.ReportMessageResponse:
        report, created = await self.moderation.report_message(
            who.user_id,
            request.conversation_id,
            request.message_seq,
            request.message_id,
            request.reason,
            request.details,
        )
        return pb.ReportMessageResponse(report=convert.report(report), duplicate=not created)

    @unary
    async def ReportUser(
        self, request: pb.ReportUserRequest, who: Identity
    ) -> pb.ReportUserResponse:
        report, created = await self.moderation.report_user(
            who.user_id, request.user_id, request.conversation_id, request.reason, request.details
        )
        return pb.ReportUserResponse(report=convert.report(report), duplicate=not created)


class EventServicer(RpcServicer, event_service_pb2_grpc.EventServiceServicer):
    SERVICE = event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
    ERRORS = {
        **STORE_ERRORS,
        StreamOverflow: grpc.StatusCode.RESOURCE_EXHAUSTED,
        UserSuspended: grpc.StatusCode.PERMISSION_DENIED,
    }

    def __init__(self, chat: Chat, bus: Bus, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.chat = chat
        self.bus = bus

    @stream
    def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, who: Identity
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        return self._events(request, who)

    async def SubscribeEventsMultiplexed(
        self,
        request_iterator: AsyncIterator[event_service_pb2.SubscribeEventsMultiplexedRequest],
        context: Context,
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsMultiplexedResponse]:
        # No call-level credential (credentials.PER_STREAM): each open is checked alone.
        streams = MultiplexedStreams(self._open_multiplexed, self._rpc_error)
        async for item in streams.serve(request_iterator):
            yield item

    def _open_multiplexed(
        self, open_: event_service_pb2.OpenEventStream
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        """One stream of a multiplexed call: the open's token checked exactly as a
        SubscribeEvents call's, then what SubscribeEvents would send that caller."""
        who = self.authenticator.authenticate(
            auth_metadata(open_.token), self.SERVICE, "SubscribeEvents"
        )
        assert isinstance(who, Identity)  # SubscribeEvents takes user tokens only
        return self._events(open_.request, who)

    async def _events(
        self, request: event_service_pb2.SubscribeEventsRequest, who: Identity
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        for cursor in request.cursors:
            check_id("cursors.conversation_id", cursor.conversation_id)
        events = EventStream(self.chat, self.bus, who.user_id)
        try:
            async for item in events.run(request.cursors):
                yield item
        finally:
            await events.close()
