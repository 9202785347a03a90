"""The gRPC servicer of ModerationService: protos in and out; the rules are in `moderation`.

Every call needs a service token with scope `chat.moderate` (chatmesh_common.credentials); the
token's subject is the actor of what the call writes."""

from __future__ import annotations

from chatmesh.moderation.v1 import moderation_service_pb2 as pb
from chatmesh.moderation.v1 import moderation_service_pb2_grpc

from chatmesh_common.auth import ServiceIdentity
from chatmesh_common.grpc_server import Registration
from chatmesh_common.rpc import Authenticator, RpcServicer, unary

from . import convert
from .moderation import Moderation
from .servicer import STORE_ERRORS
from .store.base import EventRecord, MessageRecord

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModerationService"].full_name


class ModerationServicer(RpcServicer, moderation_service_pb2_grpc.ModerationServiceServicer):
    SERVICE = SERVICE_NAME
    ERRORS = STORE_ERRORS

    def __init__(self, moderation: Moderation, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.moderation = moderation

    @unary
    async def ListReports(
        self, request: pb.ListReportsRequest, caller: ServiceIdentity
    ) -> pb.ListReportsResponse:
        reports, token = await self.moderation.list_reports(
            request.status, request.page_size, request.page_token
        )
        return pb.ListReportsResponse(
            reports=[convert.report(r) for r in reports], next_page_token=token
        )

    @unary
    async def ResolveReport(
        self, request: pb.ResolveReportRequest, caller: ServiceIdentity
    ) -> pb.ResolveReportResponse:
        report = await self.moderation.resolve_report(
            caller.service, request.report_id, request.resolution
        )
        return pb.ResolveReportResponse(report=convert.report(report))

    @unary
    async def DeleteMessage(
        self, request: pb.DeleteMessageRequest, caller: ServiceIdentity
    ) -> pb.DeleteMessageResponse:
        outcome = await self.moderation.delete_message(
            caller.service, request.conversation_id, request.message_seq
        )
        if isinstance(outcome, MessageRecord):
            return pb.DeleteMessageResponse(message=convert.message(outcome), event_seq=0)
        assert isinstance(outcome, EventRecord) and outcome.message is not None
        return pb.DeleteMessageResponse(
            message=convert.message(outcome.message), event_seq=outcome.seq
        )

    @unary
    async def RemoveMember(
        self, request: pb.RemoveMemberRequest, caller: ServiceIdentity
    ) -> pb.RemoveMemberResponse:
        seq = await self.moderation.remove_member(
            caller.service, request.conversation_id, request.user_id
        )
        return pb.RemoveMemberResponse(seq=seq)

    @unary
    async def BanMember(
        self, request: pb.BanMemberRequest, caller: ServiceIdentity
    ) -> pb.BanMemberResponse:
        seq = await self.moderation.ban_member(
            caller.service, request.conversation_id, request.user_id, request.reason
        )
        return pb.BanMemberResponse(seq=seq)

    @unary
    async def UnbanMember(
        self, request: pb.UnbanMemberRequest, caller: ServiceIdentity
    ) -> pb.UnbanMemberResponse:
        await self.moderation.unban_member(request.conversation_id, request.user_id)
        return pb.UnbanMemberResponse()

    @unary
    async def SuspendUser(
        self, request: pb.SuspendUserRequest, caller: ServiceIdentity
    ) -> pb.SuspendUserResponse:
        await self.moderation.suspend_user(caller.service, request.user_id, request.reason)
        return pb.SuspendUserResponse()

    @unary
    async def UnsuspendUser(
        self, request: pb.UnsuspendUserRequest, caller: ServiceIdentity
    ) -> pb.UnsuspendUserResponse:
        await self.moderation.unsuspend_user(request.user_id)
        return pb.UnsuspendUserResponse()

    @unary
    async def ListHeld(
        self, request: pb.ListHeldRequest, caller: ServiceIdentity
    ) -> pb.ListHeldResponse:
        held, token = await self.moderation.list_held(request.page_size, request.page_token)
        return pb.ListHeldResponse(
            held=[
                pb.HeldMessage(message=convert.message(h.pending_view()), reason=h.reason)
                for h in held
            ],
            next_page_token=token,
        )

    @unary
    async def ReleaseHeld(
        self, request: pb.ReleaseHeldRequest, caller: ServiceIdentity
    ) -> pb.ReleaseHeldResponse:
        message = await self.moderation.release_held(caller.service, request.message_id)
        return pb.ReleaseHeldResponse(message=convert.message(message))

    @unary
    async def DropHeld(
        self, request: pb.DropHeldRequest, caller: ServiceIdentity
    ) -> pb.DropHeldResponse:
        await self.moderation.drop_held(caller.service, request.message_id)
        return pb.DropHeldResponse()


def moderation_registration(moderation: Moderation, authenticator: Authenticator) -> Registration:
    """The ModerationService servicer, for chat_service's server (or the shared dev server)."""
    return (
        moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server,
        ModerationServicer(moderation, authenticator),
    )
