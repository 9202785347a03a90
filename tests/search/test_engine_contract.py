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


async def test_newest_first_is_send_time_order_not_index_order(engine: SearchEngine) -> None:
    await engine.upsert(doc("c1", 2, "late news", t=5000))
    await engine.upsert(doc("c2", 1, "late news", t=9000))
    await engine.upsert(doc("c1", 1, "late news", t=1000))  # indexed last, sent first
    assert await keys(engine, "news") == [("c2", 1), ("c1", 2), ("c1", 1)]
    assert await keys(engine, "news", limit=1) == [("c2", 1)]


async def test_messages_of_one_ms_page_in_conversation_then_seq_order(
    engine: SearchEngine,
) -> None:
    for conv, seq in [("c2", 1), ("c1", 1), ("c2", 2), ("c1", 2), ("c1", 3)]:
        await engine.upsert(doc(conv, seq, "same moment", t=7000))
    await engine.upsert(doc("c1", 9, "same moment later", t=8000))
    expected = [("c1", 9), ("c1", 3), ("c1", 2), ("c1", 1), ("c2", 2), ("c2", 1)]
    assert await keys(engine, "moment") == expected
    pages = [await keys(engine, "moment", limit=2, offset=o) for o in (0, 2, 4)]
    assert [k for page in pages for k in page] == expected


async def test_time_range_bounds_are_exact(engine: SearchEngine) -> None:
    for seq, t in enumerate([999, 1000, 1001, 1999, 2000], start=1):
        await engine.upsert(doc("c1", seq, "tick", t=t))
    assert await keys(engine, "tick", after_ms=1000, before_ms=2000) == [
        ("c1", 4),
        ("c1", 3),
        ("c1", 2),
    ]


async def test_conversation_ids_match_only_themselves(engine: SearchEngine) -> None:
    ids = ["c-1", "C-1", "x-c-1", "c 1", "c", "ü-1", "c-1-x"]
    for n, conv in enumerate(ids, start=1):
        await engine.upsert(doc(conv, 1, "shared words", t=n * 1000))
    for conv in ids:
        assert await keys(engine, "shared", conversations=[conv]) == [(conv, 1)]


async def test_a_member_of_many_conversations_finds_each_and_no_other(
    engine: SearchEngine,
) -> None:
    convs = [f"m{n:04d}" for n in range(700)]
    for n, conv in enumerate(convs):
        await engine.upsert(doc(conv, 1, f"roll call {n}", t=(n + 1) * 1000))
    await engine.upsert(doc("outside", 1, "roll call", t=10**9))
    for member_of in (convs[:3], convs[:600], convs):
        found = await keys(engine, "roll", conversations=member_of, limit=1000)
        assert found == [(c, 1) for c in reversed(member_of)]
