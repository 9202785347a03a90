"""A suspension binds at the durable write: a send that passed its suspension check before
SuspendUser and reaches the store after it is refused there, on the embedded and the CQL store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from chat_service.store.base import AppendResult, ChatStore, NewMessage
from chat_service.store.sqlite import SqliteChatStore

from .moderation_support import Moderator
from .support import ChatHarness, expect_code

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", pytest.param("cql", marks=pytest.mark.cql)])
async def real_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChatStore]:
    """An opened store of either kind on fresh storage (CQL: a keyspace of its own)."""
    store: ChatStore
    if request.param == "sqlite":
        store = SqliteChatStore(tmp_path / "chat.sqlite3")
    else:
        from chat_service.store.scylla import ScyllaChatStore

        server = request.getfixturevalue("cassandra_server")
        store = ScyllaChatStore(
            [server.host],
            port=server.port,
            local_dc=server.datacenter,
            keyspace=f"susp_{uuid.uuid4().hex[:12]}",
            replication={"class": "SimpleStrategy", "replication_factor": 1},
        )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_send_past_its_check_when_the_suspension_lands_is_refused(
    real_store: ChatStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob's send is held between chat's suspension check and the store's write while
    SuspendUser runs and returns: the write is PERMISSION_DENIED naming the suspension, and
    nothing of bob's is stored."""
    armed, entered, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    append = real_store.append_message

    async def held_append(new: NewMessage) -> AppendResult:
        if armed.is_set() and new.sender_id == "bob":
            entered.set()
            await release.wait()
        return await append(new)

    monkeypatch.setattr(real_store, "append_message", held_append)
    harness = ChatHarness(tmp_path / "chat-data", store=real_store)
    await harness.start()
    try:
        alice, bob, moderator = harness.client("alice"), harness.client("bob"), Moderator(harness)
        cid = await alice.group(bob)
        await bob.send(cid, "warm-up")  # the store knows bob as a writer of cid
        armed.set()
        racing = asyncio.create_task(bob.send(cid, "racing the suspension"))
        async with asyncio.timeout(20):
            await entered.wait()
        await moderator.moderation.SuspendUser(
            mpb.SuspendUserRequest(user_id="bob", reason="spam wave"), metadata=moderator.md
        )
        release.set()
        details = await expect_code(grpc.StatusCode.PERMISSION_DENIED, racing)
        assert "suspended" in details and "spam wave" in details
        history = await alice.history(cid)
        assert [m.body for m in history.messages] == ["warm-up"]
        assert history.last_seq == 1
    finally:
        release.set()
        await harness.stop()
