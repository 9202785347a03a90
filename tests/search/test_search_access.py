"""Search over real chat_service and search_service servers sharing a bus: access is decided at
query time, and every hit is re-read from the store, whatever the index has seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.search.v1 import search_service_pb2 as pb
from chatmesh.search.v1 import search_service_pb2_grpc

from chat_service.config import ChatConfig
from chat_service.server import build_chat_service
from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import SystemClock
from search_service.config import SearchConfig
from search_service.server import SearchService, build_search_service
from tests.chat.support import SECRET, SERVICE_SECRET, Client

pytestmark = pytest.mark.timeout(30)

INDEX_WAIT_S = 5.0


@dataclass
class Servers:
    channel: grpc.aio.Channel
    search_channel: grpc.aio.Channel
    search_service: SearchService

    async def search(self, who: Client, query: str, **kw: Any) -> list[pb.SearchHit]:
        stub: Any = search_service_pb2_grpc.SearchServiceStub(self.search_channel)
        response = await stub.Search(pb.SearchRequest(query=query, **kw), metadata=who.md)
        return list(response.hits)

    async def indexed(self, who: Client, query: str, count: int = 1) -> list[pb.SearchHit]:
        """Searches until `count` hits show (the index is asynchronous)."""
        async with asyncio.timeout(INDEX_WAIT_S):
            while True:
                hits = await self.search(who, query)
                if len(hits) >= count:
                    return hits
                await asyncio.sleep(0.02)


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    bus = InProcessBus()
    clock = SystemClock()
    chat = build_chat_service(
        ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(tmp_path),
            grpc_bind="127.0.0.1:0",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    await chat.start()
    search = build_search_service(
        SearchConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            index_path=str(tmp_path / "search.db"),
            chat_target=f"127.0.0.1:{chat.port}",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        bus=bus,
        clock=clock,
    )
    await search.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
    search_channel = grpc.aio.insecure_channel(f"127.0.0.1:{search.port}")
    try:
        yield Servers(channel, search_channel, search)
    finally:
        await channel.close(None)
        await search_channel.close(None)
        await search.stop()
        await chat.stop()


async def test_finds_with_highlights_and_filters(servers: Servers) -> None:
    alice, bob = Client(servers, "alice"), Client(servers, "bob")
    conversation = await alice.group(bob)
    await alice.send(conversation, "lunch at noon?")
    await bob.send(conversation, "Lunch sounds good")
    hits = await servers.indexed(bob, "lunch", 2)
    assert [h.sender_id for h in hits] == ["bob", "alice"]
    assert [hits[0].snippet[x.start : x.end] for x in hits[0].highlights] == ["Lunch"]
    only_alice = await servers.search(bob, "lunch", sender_id="alice")
    assert [h.sender_id for h in only_alice] == ["alice"]
    outsider = Client(servers, "carol")
    assert await servers.search(outsider, "lunch") == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await servers.search(outsider, "lunch", conversation_id=conversation)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_removed_member_stops_finding_at_once(servers: Servers) -> None:
    alice, bob = Client(servers, "alice"), Client(servers, "bob")
    conversation = await alice.group(bob)
    await alice.send(conversation, "the secret plan")
    await servers.indexed(bob, "secret")
    await alice.chat.RemoveMember(
        chat_pb.RemoveMemberRequest(conversation_id=conversation, user_id="bob"),
        metadata=alice.md,
    )
    assert await servers.search(bob, "secret") == []
    assert len(await servers.search(alice, "secret")) == 1


async def test_deleted_or_edited_message_rechecked_while_the_index_lags(
    servers: Servers,
) -> None:
    alice, bob = Client(servers, "alice"), Client(servers, "bob")
    conversation = await alice.group(bob)
    first = await alice.send(conversation, "meet at the harbour")
    second = await alice.send(conversation, "harbour gate code 1234")
    third = await alice.send(conversation, "harbour at dawn")
    await servers.indexed(bob, "harbour", 3)
    indexer = servers.search_service.indexer
    indexer.pause()
    await indexer.stop()  # the index sees nothing more: it lags behind the log
    await alice.chat.DeleteMessage(
        chat_pb.DeleteMessageRequest(conversation_id=conversation, message_seq=second.message.seq),
        metadata=alice.md,
    )
    await alice.chat.EditMessage(
        chat_pb.EditMessageRequest(
            conversation_id=conversation, message_seq=first.message.seq, body="meet at the pier"
        ),
        metadata=alice.md,
    )
    await alice.chat.EditMessage(
        chat_pb.EditMessageRequest(
            conversation_id=conversation,
            message_seq=third.message.seq,
            body="at dawn, by the harbour",
        ),
        metadata=alice.md,
    )
    hits = await servers.search(bob, "harbour")
    assert [h.seq for h in hits] == [third.message.seq]
    assert hits[0].snippet == "at dawn, by the harbour"
    assert [hits[0].snippet[x.start : x.end] for x in hits[0].highlights] == ["harbour"]


async def test_blocked_senders_messages_leave_the_blockers_search(servers: Servers) -> None:
    alice, bob, carol = Client(servers, "alice"), Client(servers, "bob"), Client(servers, "carol")
    direct = await alice.direct(bob)
    group = await alice.group(bob, carol)
    await alice.send(direct, "picnic on sunday?")
    await bob.send(direct, "picnic sounds great")
    await bob.send(group, "picnic for everyone")
    await carol.send(group, "picnic, count me in")
    await servers.indexed(alice, "picnic", 4)
    await alice.block(bob)
    # Alice's own message keeps the direct conversation findable; bob's messages are gone
    # from her search in the direct conversation and in the group alike.
    hits = await servers.search(alice, "picnic")
    assert sorted(h.sender_id for h in hits) == ["alice", "carol"]
    only_direct = await servers.search(alice, "picnic", conversation_id=direct)
    assert [h.sender_id for h in only_direct] == ["alice"]
    assert await servers.search(alice, "picnic", sender_id="bob") == []
    # The block is the blocker's choice: bob's search is unchanged, as his history is.
    assert len(await servers.search(bob, "picnic")) == 4
    assert len(await bob.all_messages(direct)) == 2
    await alice.chat.UnblockUser(chat_pb.UnblockUserRequest(user_id="bob"), metadata=alice.md)
    assert len(await servers.search(alice, "picnic")) == 4
