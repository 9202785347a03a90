"""The contract every search engine keeps, run on each engine: the embedded fts5 engine, and
the solr engine on the session's SolrCloud node (marker `solr`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from search_service.engines.base import Document, Order, Query, SearchEngine
from search_service.engines.fts5 import Fts5Engine
from search_service.engines.solr import SolrEngine
from tests.search.solr_support import empty_collection
from tests.servers.solr import SolrServer

pytestmark = pytest.mark.timeout(30)

# One collection for the whole suite, emptied before each test: creating one per test would
# cost seconds each.
CONTRACT_COLLECTION = "contract"


# The first solr test also starts the session's Solr node, hence its longer timeout.
@pytest.fixture(
    params=["fts5", pytest.param("solr", marks=[pytest.mark.solr, pytest.mark.timeout(120)])]
)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[SearchEngine]:
    built: SearchEngine
    if request.param == "solr":
        server: SolrServer = request.getfixturevalue("solr_server")
        built = SolrEngine(server.url, CONTRACT_COLLECTION, configset=server.configset)
        await built.open()
        await empty_collection(server.url, CONTRACT_COLLECTION)
    else:
        built = Fts5Engine()
        await built.open()
    try:
        yield built
    finally:
        await built.close()


def doc(conv: str, seq: int, body: str, *, sender: str = "u1", t: int = 0, v: int = 1) -> Document:
    return Document(conv, seq, sender, t or seq * 1000, v, body)


async def keys(engine: SearchEngine, text: str, **kw: object) -> list[tuple[str, int]]:
    query = Query(text, conversations=kw.pop("conversations", ["c1", "c2"]), **kw)  # type: ignore[arg-type]
    return [(h.conversation_id, h.seq) for h in await engine.search(query)]


async def test_finds_words_newest_first_in_given_conversations(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "hello brave world"))
    await engine.upsert(doc("c2", 2, "hello there"))
    await engine.upsert(doc("c3", 3, "hello from elsewhere"))
    await engine.upsert(doc("c1", 4, "goodbye"))
    assert await keys(engine, "hello") == [("c2", 2), ("c1", 1)]
    assert await keys(engine, "hello wor") == [("c1", 1)]
    assert await keys(engine, "hello", conversations=[]) == []


async def test_snippet_highlights_the_matches(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "say Hello to the world"))
    [hit] = await engine.search(Query("hello", conversations=["c1"]))
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["Hello"]


async def test_filters_sender_time_and_pages(engine: SearchEngine) -> None:
    for seq in range(1, 6):
        await engine.upsert(doc("c1", seq, f"ping {seq}", sender="a" if seq % 2 else "b"))
    assert await keys(engine, "ping", sender_id="b") == [("c1", 4), ("c1", 2)]
    assert await keys(engine, "ping", after_ms=2000, before_ms=4000) == [("c1", 3), ("c1", 2)]
    assert await keys(engine, "ping", limit=2, offset=2) == [("c1", 3), ("c1", 2)]


async def test_relevance_order(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "apple apple apple"))
    await engine.upsert(doc("c1", 2, "apple and many other words in this long message"))
    assert await keys(engine, "apple", order=Order.RELEVANCE) == [("c1", 1), ("c1", 2)]


async def test_edits_replace_and_redelivery_is_harmless(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "first draft"))
    await engine.upsert(doc("c1", 1, "second take", v=2))
    await engine.upsert(doc("c1", 1, "first draft"))  # redelivered create
    await engine.upsert(doc("c1", 1, "second take", v=2))  # redelivered edit
    assert await keys(engine, "draft") == []
    assert await keys(engine, "second") == [("c1", 1)]


async def test_deletes_remove_for_good(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "secret plan"))
    await engine.remove("c1", 1)
    await engine.upsert(doc("c1", 1, "secret plan"))
    await engine.remove("c1", 2)  # delete seen before its create
    await engine.upsert(doc("c1", 2, "secret too"))
    assert await keys(engine, "secret") == []


async def test_purge_conversation(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "old news"))
    await engine.upsert(doc("c2", 1, "old news"))
    await engine.purge_conversation("c1")
    assert await keys(engine, "news") == [("c2", 1)]


async def test_query_syntax_does_not_leak(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 1, "a OR b NEAR c"))
    assert await keys(engine, 'OR "NEAR') == [("c1", 1)]
    with pytest.raises(ValueError):
        await engine.search(Query("  ***  ", conversations=["c1"]))
