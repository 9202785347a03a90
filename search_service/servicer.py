"""The gRPC servicer of search_service: protos in and out, refusals through the shared wrappers."""

from __future__ import annotations

import grpc
from chatmesh.search.v1 import search_service_pb2 as pb
from chatmesh.search.v1 import search_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh_common.auth import Identity
from chatmesh_common.rpc import Authenticator, RpcServicer, unary

from .engines.base import EngineUnavailable, Order
from .search import NotAMember, Search, SearchRefused, SearchRequest

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name


def _ms(request: pb.SearchRequest, name: str) -> int | None:
    return getattr(request, name).ToMilliseconds() if request.HasField(name) else None


class SearchServicer(RpcServicer, search_service_pb2_grpc.SearchServiceServicer):
    SERVICE = SERVICE_NAME
    ERRORS = {
        SearchRefused: grpc.StatusCode.INVALID_ARGUMENT,
        NotAMember: grpc.StatusCode.PERMISSION_DENIED,
        EngineUnavailable: grpc.StatusCode.UNAVAILABLE,
    }

    def __init__(self, search: Search, authenticator: Authenticator) -> None:
        super().__init__(authenticator)
        self.search = search

    @unary
    async def Search(self, request: pb.SearchRequest, who: Identity) -> pb.SearchResponse:
        page = await self.search.search(
            SearchRequest(
                user_id=who.user_id,
                text=request.query,
                conversation_id=request.conversation_id,
                sender_id=request.sender_id,
                after_ms=_ms(request, "sent_after"),
                before_ms=_ms(request, "sent_before"),
                order=Order.RELEVANCE
                if request.order == pb.SEARCH_ORDER_RELEVANCE
                else Order.NEWEST,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        )
        hits = []
        for hit in page.hits:
            sent_at = Timestamp()
            sent_at.FromMilliseconds(hit.sent_at_ms)
            hits.append(
                pb.SearchHit(
                    conversation_id=hit.conversation_id,
                    seq=hit.seq,
                    sender_id=hit.sender_id,
                    sent_at=sent_at,
                    snippet=hit.snippet,
                    highlights=[pb.Highlight(start=a, end=b) for a, b in hit.highlights],
                )
            )
        return pb.SearchResponse(hits=hits, next_page_token=page.next_page_token)
