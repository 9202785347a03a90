"""What the solr engine does beyond the engine contract: it provisions its collection, its own
writes are visible to its next query, and a Solr it cannot use is an error that says so."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from search_service.config import ConfigError, SearchConfig
from search_service.engines.base import Document, EngineUnavailable, Query
from search_service.engines.solr import SolrEngine, configset_zip, snippet, solr_query
from search_service.server import build_engine
from tests.servers.ports import free_port
from tests.servers.solr import SolrServer

SECRETS = {"CHATMESH_JWT_SECRET": "j" * 32, "CHATMESH_SERVICE_SECRET": "s" * 32}


async def _collections(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.get("/admin/collections", params={"action": "LIST", "wt": "json"})
        answer.raise_for_status()
        listed: list[str] = answer.json()["collections"]
        return listed


@pytest.mark.solr
@pytest.mark.timeout(120)
async def test_open_uploads_configset_and_creates_collection_once(
    solr_server: SolrServer,
) -> None:
    """A cluster with neither gets both on the first open; a second engine finds them."""
    first = SolrEngine(solr_server.url, "provisioned", configset="provisioned-config")
    await first.open()
    second = SolrEngine(solr_server.url, "provisioned", configset="provisioned-config")
    try:
        await second.open()
        assert "provisioned" in await _collections(solr_server.url)
        await first.upsert(Document("c1", 1, "u1", 1000, 1, "hello from the first"))
        hits = await first.search(Query("hello", conversations=["c1"]))
        assert [(h.conversation_id, h.seq) for h in hits] == [("c1", 1)]
    finally:
        await second.close()
        await first.close()


@pytest.mark.solr
@pytest.mark.timeout(120)
async def test_a_write_is_visible_to_the_next_query_at_once(solr_server: SolrServer) -> None:
    """No waiting for autoSoftCommit: the search soft-commits what this engine wrote."""
    engine = SolrEngine(solr_server.url, "visibility", configset=solr_server.configset)
    await engine.open()
    try:
        for seq in range(1, 4):
            await engine.upsert(Document("c1", seq, "u1", seq * 1000, 1, f"note number {seq}"))
            hits = await engine.search(Query("note", conversations=["c1"]))
            assert len(hits) == seq
        await engine.remove("c1", 1)
        hits = await engine.search(Query("note", conversations=["c1"]))
        assert [h.seq for h in hits] == [3, 2]
    finally:
        await engine.close()


@pytest.mark.solr
@pytest.mark.timeout(120)
async def test_concurrent_writes_share_requests_and_all_land(solr_server: SolrServer) -> None:
    """Writes made while a request is in flight go together in the next; each writer hears of
    its own outcome, and the versions still decide."""
    engine = SolrEngine(solr_server.url, "concurrent", configset=solr_server.configset)
    await engine.open()
    try:
        await asyncio.gather(
            *(engine.upsert(Document("c1", n, "u1", n, 1, f"batch item {n}")) for n in range(60))
        )
        await asyncio.gather(
            *(engine.upsert(Document("c1", n, "u1", n, 2, f"edited item {n}")) for n in range(30)),
            *(engine.upsert(Document("c1", n, "u1", n, 1, "stale item")) for n in range(30)),
            *(engine.remove("c1", n) for n in range(50, 60)),
        )
        assert engine.requests_sent <= 4  # not 130
        edited = await engine.search(Query("edited", conversations=["c1"], limit=100))
        untouched = await engine.search(Query("batch", conversations=["c1"], limit=100))
        assert sorted(h.seq for h in edited) == list(range(30))
        assert sorted(h.seq for h in untouched) == list(range(30, 50))
        assert await engine.search(Query("stale", conversations=["c1"])) == []
    finally:
        await engine.close()


@pytest.mark.timeout(30)
async def test_an_unreachable_solr_is_engine_unavailable() -> None:
    """Nothing listens on the port: open fails with the URL named, not a bare httpx error."""
    url = f"http://127.0.0.1:{free_port()}/solr"
    engine = SolrEngine(url, timeout_s=5)
    with pytest.raises(EngineUnavailable, match=re.escape(url)):
        await engine.open()


def test_query_quotes_words_and_scores_the_last_one_exactly_too() -> None:
    """Operators are words, and a prefix alone would not be scored."""
    assert solr_query('OR "NEAR') == '+body:"or" +(body:"near" body:near*)'
    with pytest.raises(ValueError):
        solr_query(" *** ")


def test_snippet_marks_where_it_cuts_the_body() -> None:
    """An ellipsis on each side that is cut, the highlight ranges shifted past it."""
    body = "one two three four five"
    text, ranges = snippet(body, "two \ue000three\ue001 four")
    assert text == "…two three four…"
    assert [text[a:b] for a, b in ranges] == ["three"]
    assert snippet("short", None) == ("short", ())


def test_configset_zip_holds_the_schema_and_config_at_its_root() -> None:
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(configset_zip())).namelist()
    assert sorted(names) == ["managed-schema.xml", "solrconfig.xml"]


def test_config_selects_solr_and_requires_its_url() -> None:
    """CHATMESH_SEARCH_ENGINE=solr builds the solr engine; without a URL it refuses to start."""
    with pytest.raises(ConfigError, match="CHATMESH_SEARCH_SOLR_URL"):
        SearchConfig.from_env({**SECRETS, "CHATMESH_SEARCH_ENGINE": "solr"})
    config = SearchConfig.from_env(
        {
            **SECRETS,
            "CHATMESH_MODE": "cluster",
            "CHATMESH_BUS": "nats",
            "CHATMESH_NATS_URLS": "nats://nats-0:4222",
            "CHATMESH_SEARCH_ENGINE": "solr",
            "CHATMESH_SEARCH_SOLR_URL": "http://solr-0:8983/solr/",
            "CHATMESH_SEARCH_SOLR_COLLECTION": "prod-messages",
        }
    )
    engine = build_engine(config)
    assert isinstance(engine, SolrEngine)
    assert engine.collection == "prod-messages"
