"""The `search` scenario: index throughput and query latency of a search engine: the embedded
one (SQLite FTS5, `--engine fts5`, the default) or the cluster one (Apache Solr in SolrCloud mode,
`--engine solr`: the cluster at `--solr-url`, else a throwaway one-node SolrCloud started from
tests/servers/solr.py).

`--messages` message_created events, spread over `--conversations` conversations, bodies of 8 to
16 words drawn from a 5,000-word vocabulary with Zipf-like frequencies (a few words are in a
large part of all messages, most are rare), are written straight into an embedded durable log
file (`events.sqlite3`, the format `chatmesh dev` keeps in its data dir).

Index: search_service's `Indexer` (the durable consumer, decode, engine upserts, acks: what the
running service does) follows that log into the engine until it is caught up; messages/s is
the count over the wall time of that catch-up.

Query: `Search.search` (the query path of the Search RPC: the caller's conversations, the engine's
query, the re-check of each hit) on the engine that indexed, for `--requests` queries in turn,
each for a user who is a member of `--group-size` conversations, in four kinds: a frequent word,
a rare word, a prefix, and two words. chat_service's AccessService answers (two gRPC calls per
query in a deployment) come from memory here, so the figures are the engine's and the query
path's, not the network's.

Runs in this process, without `chatmesh dev`: a million sends through the gateway would take
far longer than the index does, for no insight into search.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2

from bench.report import Result, percentile
from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
from chatmesh_common.bus.durable_log import DurableLog
from chatmesh_common.clock import SystemClock
from chatmesh_common.subjects import DurableKind, durable_subject
from search_service.engines.base import SearchEngine
from search_service.engines.fts5 import Fts5Engine
from search_service.engines.solr import SolrEngine
from search_service.indexer import Indexer
from search_service.search import Search, SearchRequest

MS = 1000.0
VOCABULARY = 5000
SENDERS = 200
SEED = 7
SOLR_COLLECTION = "bench-search"
QUERY_KINDS = ("frequent word", "rare word", "prefix", "two words")


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ner", "ta", "vu", "si", "ron", "pe", "dal", "qui", "zo"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words, key=lambda w: (len(w), w))


class _Corpus:
    def __init__(self, conversations: int) -> None:
        self.rng = random.Random(SEED)
        self.words = _vocabulary(self.rng)
        weights = [1.0 / (rank + 1) for rank in range(len(self.words))]
        self._cum = list(_accumulate(weights))
        self.conversations = [f"c{n:05d}" for n in range(conversations)]

    def body(self) -> str:
        count = self.rng.randint(8, 16)
        return " ".join(self.rng.choices(self.words, cum_weights=self._cum, k=count))


def _accumulate(values: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for v in values:
        total += v
        out.append(total)
    return out


def write_log(path: Path, corpus: _Corpus, messages: int) -> None:
    """`messages` message_created events into the embedded log file at `path`."""
    DurableLog(path).close()  # the schema
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    seqs = dict.fromkeys(corpus.conversations, 0)
    now = time.time()
    start_ms = int((now - messages) * 1000)
    insert = "INSERT INTO log (subject, data, msg_id, published_at) VALUES (?, ?, ?, ?)"
    rows = []
    for n in range(messages):
        cid = corpus.conversations[corpus.rng.randrange(len(corpus.conversations))]
        seqs[cid] += 1
        message = types_pb2.Message(
            conversation_id=cid,
            seq=seqs[cid],
            message_id=f"m{n}",
            sender_id=f"u{corpus.rng.randrange(SENDERS)}",
            body=corpus.body(),
            version=1,
        )
        message.created_at.FromMilliseconds(start_ms + n * 1000)
        event = events_pb2.ConversationEvent(
            conversation_id=cid, seq=message.seq, actor_id=message.sender_id
        )
        event.occurred_at.CopyFrom(message.created_at)
        event.message_created.message.CopyFrom(message)
        rows.append(
            (
                durable_subject(cid, DurableKind.CREATED),
                event.SerializeToString(),
                f"{cid}:{message.seq}:created",
                now,
            )
        )
        if len(rows) == 10_000:
            db.executemany(insert, rows)
            rows.clear()
    db.executemany(insert, rows)
    db.commit()
    db.close()


class _Access:
    """SearchAccess from memory: every user of the bench is in the same few conversations."""

    def __init__(self, conversations: list[str]) -> None:
        self._conversations = conversations

    async def searchable_conversations(self, user_id: str) -> list[str]:
        return self._conversations

    async def current_messages(
        self, user_id: str, refs: Sequence[tuple[str, int]]
    ) -> list[types_pb2.Message]:
        return [types_pb2.Message(conversation_id=c, seq=s, version=1) for c, s in refs]


async def _index(
    log_path: Path, engine: SearchEngine, messages: int, lanes: int
) -> tuple[float, int]:
    """Seconds until the indexer has taken every event; how many it handled."""
    clock = SystemClock()
    bus = InProcessBus(log_path, clock)
    indexer = Indexer(bus, engine, clock, lanes=lanes)
    handled = 0
    began = time.perf_counter()
    try:
        while handled < messages:
            got = await indexer.run_once(0.2)
            if not got:
                break
            handled += got
        return time.perf_counter() - began, handled
    finally:
        await indexer.stop()
        await bus.close()


def _load() -> float:
    return os.getloadavg()[0]


def _queries(corpus: _Corpus, kind: str, count: int) -> list[str]:
    rng = random.Random(SEED + QUERY_KINDS.index(kind))
    frequent = corpus.words[:20]
    rare = corpus.words[len(corpus.words) // 2 :]
    out = []
    for _ in range(count):
        if kind == "frequent word":
            out.append(rng.choice(frequent))
        elif kind == "rare word":
            out.append(rng.choice(rare))
        elif kind == "prefix":
            word = rng.choice(corpus.words[:500])
            out.append(word[: max(2, len(word) // 2)])
        else:
            out.append(f"{rng.choice(frequent)} {rng.choice(corpus.words[:1000])}")
    return out


async def _query(
    engine: SearchEngine, member_of: list[str], corpus: _Corpus, requests: int, page: int
) -> dict[str, tuple[list[float], int]]:
    """Per kind: latencies (ms) and total hits."""
    search = Search(engine, _Access(member_of))
    out: dict[str, tuple[list[float], int]] = {}
    per_kind = max(1, requests // len(QUERY_KINDS))
    for kind in QUERY_KINDS:
        texts = _queries(corpus, kind, per_kind)
        for text in texts[: min(20, len(texts))]:  # warm the page cache
            await search.search(SearchRequest("reader", text, page_size=page))
        lat: list[float] = []
        hits = 0
        for text in texts:
            began = time.perf_counter()
            result = await search.search(SearchRequest("reader", text, page_size=page))
            lat.append((time.perf_counter() - began) * MS)
            hits += len(result.hits)
        out[kind] = (lat, hits)
    return out


@contextlib.contextmanager
def _solr_url(args: argparse.Namespace) -> Iterator[str]:
    """The given SolrCloud, or a throwaway one-node SolrCloud for the run."""
    if args.solr_url:
        yield args.solr_url
        return
    from tests.servers.solr import SolrServer

    server = SolrServer(heap="1g")
    started = time.perf_counter()
    server.start()
    print(f"# started SolrCloud in {time.perf_counter() - started:.1f}s at {server.url}")
    try:
        yield server.url
    finally:
        server.stop()


def _solr_index_mib(url: str) -> float:
    """Index bytes of the bench collection's cores, as Solr counts them."""
    answer = httpx.get(
        f"{url.rstrip('/')}/admin/cores", params={"action": "STATUS", "wt": "json"}, timeout=30
    ).json()
    size = sum(
        core["index"]["sizeInBytes"]
        for name, core in answer["status"].items()
        if name.startswith(f"{SOLR_COLLECTION}_")
    )
    return float(size) / 2**20


async def _solr_reset(url: str) -> None:
    """An empty bench collection: the one of an earlier run on the same cluster is dropped."""
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=120) as client:
        listed = await client.get("/admin/collections", params={"action": "LIST", "wt": "json"})
        if SOLR_COLLECTION in listed.json().get("collections", []):
            dropped = await client.get(
                "/admin/collections",
                params={"action": "DELETE", "name": SOLR_COLLECTION, "wt": "json"},
            )
            dropped.raise_for_status()


async def _index_and_query(
    engine: SearchEngine,
    log_path: Path,
    args: argparse.Namespace,
    corpus: _Corpus,
    member_of: list[str],
) -> tuple[float, int, dict[str, tuple[list[float], int]]]:
    await engine.open()
    try:
        seconds, handled = await _index(log_path, engine, args.messages, args.index_lanes)
        timings = await _query(engine, member_of, corpus, args.requests, args.page)
        return seconds, handled, timings
    finally:
        await engine.close()


def scenario_search(args: argparse.Namespace) -> Result:
    """Index messages/s and query p50/p99 over `--messages` messages, on `--engine`."""
    result = Result(
        "search",
        args.mode,
        {
            "engine": args.engine,
            "index_lanes": args.index_lanes,
            "messages": args.messages,
            "conversations": args.conversations,
            "member_of": args.group_size,
            "requests": args.requests,
            "page": args.page,
        },
    )
    corpus = _Corpus(args.conversations)
    member_of = corpus.conversations[: min(args.group_size, len(corpus.conversations))]
    with tempfile.TemporaryDirectory(prefix="chatmesh-bench-search-") as tmp:
        log_path = Path(tmp) / DURABLE_LOG_FILE
        index_path = Path(tmp) / "search.db"
        began = time.perf_counter()
        write_log(log_path, corpus, args.messages)
        result.notes.append(
            f"{args.messages:,} message_created events written to the embedded log in "
            f"{time.perf_counter() - began:.1f} s before indexing."
        )
        loads = [_load()]
        with contextlib.ExitStack() as stack:
            engine: SearchEngine
            if args.engine == "solr":
                url = stack.enter_context(_solr_url(args))
                asyncio.run(_solr_reset(url))
                engine = SolrEngine(url, SOLR_COLLECTION)
            else:
                engine = Fts5Engine(str(index_path))
            seconds, handled, timings = asyncio.run(
                _index_and_query(engine, log_path, args, corpus, member_of)
            )
            index_mib = (
                _solr_index_mib(url) if args.engine == "solr" else index_path.stat().st_size / 2**20
            )
        loads.append(_load())
        result.rows.append(
            {
                "step": "index",
                "messages": handled,
                "seconds": round(seconds, 2),
                "messages_per_s": round(handled / seconds) if seconds else 0,
                "index_mib": round(index_mib, 1),
            }
        )
        if handled != args.messages:
            result.notes.append(f"the indexer handled {handled:,} of {args.messages:,} events")
    everything: list[float] = []
    for kind, (lat, hits) in timings.items():
        everything += lat
        result.series[kind] = lat
        result.rows.append(
            {
                "step": f"query: {kind}",
                "samples": len(lat),
                "p50_ms": round(percentile(lat, 50), 2),
                "p99_ms": round(percentile(lat, 99), 2),
                "max_ms": round(max(lat), 2),
                "hits_per_query": round(hits / len(lat), 1),
            }
        )
    result.notes.append(
        f"Each query is one user's, a member of {len(member_of)} of the {args.conversations} "
        f"conversations (about {len(member_of) / args.conversations:.0%} of the messages), "
        f"newest first, a page of {args.page}; AccessService answers come from memory."
    )
    # The machine is shared: the load says how far the figures are this code's alone.
    result.notes.append(
        "1-minute load average before indexing and after querying: "
        + ", ".join(f"{load:.1f}" for load in loads)
        + f" ({os.cpu_count()} CPUs)."
    )
    result.target("query p99 ms (every kind)", percentile(everything, 99), 50, False)
    return result
