"""`chatmesh search reindex` over a real chat_service writing its durable log to a data dir: a
wiped index answers again, --conversation limits the rebuild, an interrupted rebuild
continues from its checkpoint, and the solr engine's collection is filled the same way."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
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
from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
from chatmesh_common.clock import SystemClock
from search_service import reindex as reindex_module
from search_service.config import SearchConfig
from search_service.engines.base import Document, Query
from search_service.engines.fts5 import Fts5Engine
from search_service.engines.solr import SolrEngine
from search_service.reindex import checkpoint_path, reindex_from_env
from search_service.server import build_search_service
from tests.chat.support import SECRET, SERVICE_SECRET, Client
from tests.servers.solr import SolrServer

pytestmark = pytest.mark.timeout(60)


@dataclass
class Setup:
    data_dir: Path
    channel: grpc.aio.Channel
    search_channel: grpc.aio.Channel
    engine: Fts5Engine
    alice: Client
    bob: Client
    first: str
    second: str
    # Message events in the log: creates, edits and deletes.
    events: int

    async def search(self, who: Client, query: str) -> list[pb.SearchHit]:
        stub: Any = search_service_pb2_grpc.SearchServiceStub(self.search_channel)
        response = await stub.Search(pb.SearchRequest(query=query), metadata=who.md)
        return list(response.hits)

    def indexed(self, conversation: str) -> list[tuple[str, int]]:
        rows = self.engine.db.execute(
            "SELECT conversation_id, seq FROM docs WHERE removed = 0 AND conversation_id = ?"
            " ORDER BY seq",
            (conversation,),
        ).fetchall()
        return [(c, s) for c, s in rows]

    def wipe(self) -> None:
        with self.engine.db:
            self.engine.db.execute("DELETE FROM docs")
            self.engine.db.execute("DELETE FROM docs_fts")

    @property
    def index(self) -> Path:
        return self.data_dir / "search.db"


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    for name in ("CHATMESH_SEARCH_INDEX", "CHATMESH_BUS", "CHATMESH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    clock = SystemClock()
    bus = InProcessBus(tmp_path / DURABLE_LOG_FILE, clock)
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
    engine = Fts5Engine(str(tmp_path / "search.db"))
    await engine.open()
    search = build_search_service(
        SearchConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            grpc_bind="127.0.0.1:0",
            chat_target=f"127.0.0.1:{chat.port}",
            shutdown_grace_s=0.1,
            drain_s=0,
        ),
        engine=engine,
        bus=bus,
        clock=clock,
    )
    await search.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{chat.port}")
    search_channel = grpc.aio.insecure_channel(f"127.0.0.1:{search.port}")

    class Source:
        @property
        def channel(self) -> grpc.aio.Channel:
            return channel

    alice, bob = Client(Source(), "alice"), Client(Source(), "bob")
    first = await alice.group(bob)
    second = await alice.group(bob)
    for n in range(5):
        await alice.send(first, f"kayak trip day {n}")
    for n in range(3):
        await bob.send(second, f"kayak rental {n}")
    gone = await alice.send(first, "kayak secret")
    await alice.chat.DeleteMessage(
        chat_pb.DeleteMessageRequest(conversation_id=first, message_seq=gone.message.seq),
        metadata=alice.md,
    )
    edited = await bob.send(second, "canoe rental")
    await bob.chat.EditMessage(
        chat_pb.EditMessageRequest(
            conversation_id=second, message_seq=edited.message.seq, body="kayak rental, edited"
        ),
        metadata=bob.md,
    )
    ready = Setup(tmp_path, channel, search_channel, engine, alice, bob, first, second, 12)
    async with asyncio.timeout(5):
        while True:
            if len(await ready.search(bob, "kayak")) == 9:
                break
            await asyncio.sleep(0.02)
    try:
        yield ready
    finally:
        await channel.close(None)
        await search_channel.close(None)
        await search.stop()
        await chat.stop()
        await engine.close()
        await bus.close()


async def test_wiped_index_answers_again(setup: Setup) -> None:
    before = setup.indexed(setup.first), setup.indexed(setup.second)
    setup.wipe()
    assert await setup.search(setup.bob, "kayak") == []
    out = io.StringIO()
    result = await reindex_from_env(str(setup.data_dir), out=out)
    assert result.finished and result.done == result.total == setup.events
    assert (setup.indexed(setup.first), setup.indexed(setup.second)) == before
    assert len(await setup.search(setup.bob, "kayak")) == 9
    hits = await setup.engine.search(Query("edited", [setup.second]))
    assert [h.snippet for h in hits] == ["kayak rental, edited"]
    assert await setup.engine.search(Query("secret", [setup.first])) == []
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith(f"reindex: {setup.events}/{setup.events} messages, ")
    assert lines[-1].endswith("(done)")
    assert not checkpoint_path(str(setup.index)).exists()


async def test_conversation_limits_the_rebuild(setup: Setup) -> None:
    setup.wipe()
    result = await reindex_from_env(
        str(setup.data_dir), conversation_id=setup.second, out=io.StringIO()
    )
    assert result.finished and result.done == 5  # 4 creates and an edit
    assert setup.indexed(setup.first) == []
    assert len(setup.indexed(setup.second)) == 4
    hits = await setup.search(setup.bob, "kayak")
    assert {h.conversation_id for h in hits} == {setup.second}


async def test_limited_rebuild_continues_on_a_rerun(setup: Setup) -> None:
    setup.wipe()
    out = io.StringIO()
    stopped = await reindex_from_env(str(setup.data_dir), limit=4, out=out)
    assert not stopped.finished and stopped.done == 4 and stopped.total == setup.events
    assert checkpoint_path(str(setup.index)).exists()
    assert len(setup.indexed(setup.first)) == 4
    assert "run again to continue" in out.getvalue()
    rest = await reindex_from_env(str(setup.data_dir), out=out)
    assert rest.finished and rest.done == rest.total == setup.events
    assert "resumed at 4" in out.getvalue()
    assert len(await setup.search(setup.bob, "kayak")) == 9
    # Finished: the next rebuild reads the whole log again.
    again = await reindex_from_env(str(setup.data_dir), out=io.StringIO())
    assert again.finished and again.done == setup.events


async def test_killed_rebuild_gets_its_untaken_batch_again(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.wipe()
    monkeypatch.setattr(reindex_module, "REINDEX_ACK_WAIT_S", 0.3)
    real_upsert = Fts5Engine.upsert
    calls = 0

    async def dies_midway(self: Fts5Engine, doc: Document) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # a kill in the middle of a batch: nothing acked
        await real_upsert(self, doc)

    monkeypatch.setattr(Fts5Engine, "upsert", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        await reindex_from_env(str(setup.data_dir), out=io.StringIO())
    assert checkpoint_path(str(setup.index)).exists()
    monkeypatch.setattr(Fts5Engine, "upsert", real_upsert)
    result = await reindex_from_env(str(setup.data_dir), out=io.StringIO())
    assert result.finished
    assert len(await setup.search(setup.bob, "kayak")) == 9


async def test_cli_reindex(setup: Setup) -> None:
    setup.wipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    command = [sys.executable, "-m", "chatmesh_launcher", "search", "reindex"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--data-dir", str(setup.data_dir), "--conversation", setup.first],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1].startswith("reindex: 7/7 messages, ")
    assert len(setup.indexed(setup.first)) == 5 and setup.indexed(setup.second) == []
    refused = await asyncio.to_thread(
        subprocess.run, [*command, "--limit", "0"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "--limit must be positive" in refused.stderr


@pytest.mark.solr
@pytest.mark.timeout(120)
async def test_reindex_fills_a_solr_collection(
    setup: Setup, solr_server: SolrServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CHATMESH_SEARCH_ENGINE=solr the log goes into the named collection: edits replaced,
    deletes absent."""
    monkeypatch.setenv("CHATMESH_SEARCH_ENGINE", "solr")
    monkeypatch.setenv("CHATMESH_SEARCH_SOLR_URL", solr_server.url)
    monkeypatch.setenv("CHATMESH_SEARCH_SOLR_COLLECTION", "reindexed")
    out = io.StringIO()
    result = await reindex_from_env(str(setup.data_dir), out=out)
    assert result.finished and result.done == setup.events
    assert "solr collection reindexed" in out.getvalue().splitlines()[0]
    engine = SolrEngine(solr_server.url, "reindexed")
    await engine.open()
    try:
        both = [setup.first, setup.second]
        assert len(await engine.search(Query("kayak", both, limit=50))) == 9
        hits = await engine.search(Query("edited", [setup.second]))
        assert [h.snippet for h in hits] == ["kayak rental, edited"]
        assert await engine.search(Query("secret", both)) == []
        assert await engine.search(Query("canoe", both)) == []
    finally:
        await engine.close()
