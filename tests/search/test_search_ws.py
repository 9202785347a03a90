"""Search through the WebSocket edge of `chatmesh dev`: the `search` frame reaches SearchService
with the socket's user, and answers only from that user's conversations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatmesh.gateway.v1 import gateway_pb2

from tests.gateway.client import GatewayClient, ServerError
from tests.media.support import Dev, start_dev

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    async with start_dev(tmp_path) as system:
        yield system


async def _hits(client: GatewayClient, query: str, want: int) -> list[int]:
    """Seqs of the hits, once the asynchronous index has `want` of them (or after 10 s)."""
    for _ in range(100):
        answer = await client.call("search", query=query)
        seqs = [hit.seq for hit in answer.search.hits]
        if len(seqs) >= want:
            return seqs
        await asyncio.sleep(0.1)
    return seqs


async def test_search_frame_finds_members_messages_only(dev: Dev) -> None:
    alice, bob, carol = [await dev.connect(u) for u in ("alice", "bob", "carol")]
    cid = await alice.create_group("bob")
    await alice.call(
        "send_message", conversation_id=cid, client_msg_id="k1", body="the quarterly roadmap"
    )
    assert await _hits(bob, "roadmap", 1) == [1]
    assert await _hits(carol, "roadmap", 0) == []
    with pytest.raises(ServerError) as refused:
        await carol.call("search", query="roadmap", conversation_id=cid)
    assert gateway_pb2.ErrorCode.Name(refused.value.code) == "ERROR_CODE_PERMISSION_DENIED"
    with pytest.raises(ServerError) as empty:
        await bob.call("search", query="   ")
    assert gateway_pb2.ErrorCode.Name(empty.value.code) == "ERROR_CODE_INVALID_ARGUMENT"
