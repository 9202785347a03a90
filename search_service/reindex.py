"""Rebuilding the search index from chat_service's durable log (`chatmesh search reindex`).

A rebuild reads the log from its start through a durable consumer of its own, so it works the
same on the embedded log (the SQLite file in the data dir) and on JetStream, while the running
indexer keeps its own position. The events are applied as the indexer applies them (idempotent:
at-least-once delivery, versions and tombstones), so a rebuild into an index that is not empty
repairs it, and one into a wiped index fills it again.

The position is the rebuild consumer's: each batch is acked once applied, and a checkpoint file
next to the index (`<index>.reindex`, JSON) names that consumer, the conversation it is limited
to and how many messages were done. A rerun after an interrupt (a kill, or `--limit`) finds the
checkpoint and continues with the same consumer; what an interrupted batch had not acked comes
again after the short ack wait. Once the consumer is caught up with the log the checkpoint is
removed and the consumer dropped, so the next rebuild starts from the start again.

The log keeps events for its max age only (7 days by default, `CHATMESH_NATS_STREAM_MAX_AGE_S`
in a cluster): a message older than that is not in the log and is not brought back.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TextIO

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus
from chatmesh_common.bus.base import DurableMessage
from chatmesh_common.bus.wildcards import durable_filters, filter_tokens, tokens_match
from chatmesh_common.clock import Clock
from chatmesh_common.subjects import DurableKind, durable_subject, kind_filter

from .engines.base import SearchEngine
from .indexer import apply_event

# Membership events change nothing in the index (access is decided at query time).
REINDEX_KINDS = (DurableKind.CREATED, DurableKind.EDITED, DurableKind.DELETED)
CONSUMER_PREFIX = "search-reindex-"
# Short, so a batch an interrupted run had taken comes again soon after a rerun starts.
REINDEX_ACK_WAIT_S = 5.0
DEFAULT_BATCH = 500
# A fetch that finds nothing waits this long before the backlog is asked again.
FETCH_TIMEOUT_S = 0.5
PROGRESS_EVERY_S = 1.0


def reindex_filters(conversation_id: str = "") -> tuple[str, ...]:
    """The durable subjects a rebuild reads: message events, of one conversation or all."""
    if conversation_id:
        return tuple(durable_subject(conversation_id, kind) for kind in REINDEX_KINDS)
    return tuple(kind_filter(kind) for kind in REINDEX_KINDS)


def checkpoint_path(index_path: str) -> Path:
    return Path(f"{index_path}.reindex")


@dataclass
class Checkpoint:
    consumer: str
    conversation_id: str
    done: int = 0

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            raw = json.loads(path.read_text())
            return cls(str(raw["consumer"]), str(raw["conversation_id"]), int(raw["done"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path} is not a reindex checkpoint; remove it to start over"
            ) from exc

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)


@dataclass(frozen=True)
class Backlog:
    """What a consumer has still to take (`new`) and has taken but not acked (`in_flight`)."""

    new: int
    in_flight: int

    @property
    def empty(self) -> bool:
        return self.new == 0 and self.in_flight == 0


class LogPosition(Protocol):
    """How far a durable consumer is behind the log, and how to drop it when done."""

    async def backlog(self, consumer: str, filters: Sequence[str]) -> Backlog: ...

    async def drop(self, consumer: str) -> None: ...


class EmbeddedLogPosition:
    """LogPosition over the embedded log's SQLite file (read next to the bus's own connection)."""

    def __init__(self, log_path: Path) -> None:
        self._db = sqlite3.connect(str(log_path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")

        def matches(filters: str, subject: str) -> bool:
            tokens = subject.split(".")
            return any(tokens_match(filter_tokens(f), tokens) for f in filters.split(" "))

        self._db.create_function("reindex_matches", 2, matches, deterministic=True)

    async def backlog(self, consumer: str, filters: Sequence[str]) -> Backlog:
        row = self._db.execute(
            "SELECT cursor FROM consumers WHERE name = ?", (consumer,)
        ).fetchone()
        cursor = row[0] if row else 0
        (new,) = self._db.execute(
            "SELECT COUNT(*) FROM log WHERE seq > ? AND reindex_matches(?, subject)",
            (cursor, " ".join(durable_filters(filters))),
        ).fetchone()
        (in_flight,) = self._db.execute(
            "SELECT COUNT(*) FROM pending WHERE consumer = ?", (consumer,)
        ).fetchone()
        return Backlog(int(new), int(in_flight))

    async def drop(self, consumer: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM pending WHERE consumer = ?", (consumer,))
            self._db.execute("DELETE FROM consumers WHERE name = ?", (consumer,))

    def close(self) -> None:
        self._db.close()


class JetStreamLogPosition:
    """LogPosition from JetStream's consumer info."""

    def __init__(self, bus: Bus) -> None:
        from chatmesh_common.bus.nats import NatsBus

        assert isinstance(bus, NatsBus)
        self._bus = bus

    async def backlog(self, consumer: str, filters: Sequence[str]) -> Backlog:
        info = await self._bus.js.consumer_info(self._bus.settings.stream, consumer)
        return Backlog(int(info.num_pending or 0), int(info.num_ack_pending or 0))

    async def drop(self, consumer: str) -> None:
        with contextlib.suppress(Exception):
            await self._bus.js.delete_consumer(self._bus.settings.stream, consumer)


class Progress:
    """One line on `out` at most every PROGRESS_EVERY_S: messages done / total, rate."""

    def __init__(self, out: TextIO, clock: Clock, total: int, done: int) -> None:
        self._out = out
        self._clock = clock
        self.total = total
        self.done = done
        self._start_done = done
        self._started = clock.now()
        self._shown = float("-inf")

    def advance(self, count: int) -> None:
        self.done += count
        if self._clock.now() - self._shown >= PROGRESS_EVERY_S:
            self.show()

    def show(self, note: str = "") -> None:
        now = self._clock.now()
        self._shown = now
        elapsed = max(now - self._started, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        total = max(self.total, self.done)
        suffix = f" ({note})" if note else ""
        print(
            f"reindex: {self.done}/{total} messages, {rate:.0f}/s{suffix}",
            file=self._out,
            flush=True,
        )


@dataclass(frozen=True)
class ReindexResult:
    done: int
    total: int
    finished: bool


async def reindex(
    bus: Bus,
    engine: SearchEngine,
    position: LogPosition,
    checkpoint_file: Path,
    clock: Clock,
    *,
    conversation_id: str = "",
    limit: int | None = None,
    restart: bool = False,
    batch: int = DEFAULT_BATCH,
    out: TextIO = sys.stderr,
) -> ReindexResult:
    """Applies the log's message events to `engine`, from the checkpoint's position if there is
    one for the same conversation (else from the log's start); stops when caught up, or after
    about `limit` messages (a whole batch: the checkpoint stays, a rerun continues)."""
    checkpoint = Checkpoint.load(checkpoint_file)
    if checkpoint is not None and (restart or checkpoint.conversation_id != conversation_id):
        await position.drop(checkpoint.consumer)
        checkpoint = None
    if checkpoint is None:
        checkpoint = Checkpoint(CONSUMER_PREFIX + secrets.token_hex(8), conversation_id)
        resumed = ""
    else:
        resumed = f"resumed at {checkpoint.done}"
    checkpoint.save(checkpoint_file)
    filters = reindex_filters(conversation_id)
    consumer = await bus.durable_consumer(
        checkpoint.consumer, filters, ack_wait_s=REINDEX_ACK_WAIT_S
    )
    try:
        left = await position.backlog(checkpoint.consumer, filters)
        progress = Progress(
            out, clock, checkpoint.done + left.new + left.in_flight, checkpoint.done
        )
        progress.show(resumed)
        this_run = 0
        while limit is None or this_run < limit:
            room = batch if limit is None else min(batch, limit - this_run)
            deliveries = await consumer.fetch(room, FETCH_TIMEOUT_S)
            if not deliveries:
                if (await position.backlog(checkpoint.consumer, filters)).empty:
                    progress.total = progress.done
                    progress.show("done")
                    await consumer.close()
                    await position.drop(checkpoint.consumer)
                    checkpoint_file.unlink(missing_ok=True)
                    return ReindexResult(progress.done, progress.done, True)
                continue  # what an interrupted run had taken comes after its ack wait
            for delivery in deliveries:
                await _apply(engine, delivery)
            for delivery in deliveries:
                await delivery.ack()
            this_run += len(deliveries)
            checkpoint.done += len(deliveries)
            checkpoint.save(checkpoint_file)
            progress.advance(len(deliveries))
        progress.show(f"stopped after {this_run}; run again to continue")
        return ReindexResult(progress.done, max(progress.total, progress.done), False)
    finally:
        await consumer.close()


async def _apply(engine: SearchEngine, delivery: DurableMessage) -> None:
    try:
        event = events_pb2.ConversationEvent.FromString(delivery.data)
    except Exception:
        return  # undecodable: it would never decode on a rerun either
    await apply_event(engine, event)


def _solr_engine_from_env() -> tuple[SearchEngine, str]:
    """The solr engine the environment names, and how to name it to the user."""
    from chatmesh_common.settings import ConfigError, read_one

    from .config import SearchConfig
    from .engines.solr import SolrEngine

    url = str(read_one(SearchConfig, "solr_url"))
    if not url:
        raise ConfigError("CHATMESH_SEARCH_ENGINE=solr needs CHATMESH_SEARCH_SOLR_URL")
    collection = str(read_one(SearchConfig, "solr_collection"))
    engine = SolrEngine(
        url,
        collection,
        configset=str(read_one(SearchConfig, "solr_configset")),
        shards=int(read_one(SearchConfig, "solr_shards")),
        replicas=int(read_one(SearchConfig, "solr_replicas")),
    )
    return engine, f"solr collection {collection} at {url}"


async def reindex_from_env(
    data_dir: str | None,
    *,
    conversation_id: str = "",
    limit: int | None = None,
    restart: bool = False,
    out: TextIO = sys.stderr,
) -> ReindexResult:
    """`chatmesh search reindex`: the bus, log and index named by the environment.

    Embedded (CHATMESH_BUS=inprocess): the durable log in chat_service's data dir (`data_dir`,
    which the launcher resolves from --data-dir or CHATMESH_DATA_DIR), and the index at
    CHATMESH_SEARCH_INDEX, else `search.db` in the data dir (where `chatmesh dev` keeps it).
    With CHATMESH_BUS=nats: JetStream, and the index at CHATMESH_SEARCH_INDEX.
    With CHATMESH_SEARCH_ENGINE=solr the index is the Solr collection the solr settings name;
    the checkpoint file stays where the fts5 index would be.
    """
    from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
    from chatmesh_common.bus.nats_settings import nats_settings_from_env
    from chatmesh_common.clock import SystemClock
    from chatmesh_common.settings import ConfigError, environ, read_one

    from .config import SearchConfig
    from .engines.fts5 import Fts5Engine

    clock = SystemClock()
    bus_kind = read_one(SearchConfig, "bus")
    index_set = bool(environ(None).get("CHATMESH_SEARCH_INDEX", "").strip())
    position: LogPosition
    embedded: EmbeddedLogPosition | None = None
    bus: Bus
    if bus_kind == "nats":
        from chatmesh_common.bus.nats import NatsBus

        index_path = str(read_one(SearchConfig, "index_path"))
        bus = await NatsBus.connect(nats_settings_from_env(dict(environ(None))))
        position = JetStreamLogPosition(bus)
    else:
        root = Path(data_dir or "./chatmesh-data")
        log_path = root / DURABLE_LOG_FILE
        if not log_path.exists():
            raise ConfigError(f"no durable log at {log_path} (is the data dir right?)")
        index_path = (
            str(read_one(SearchConfig, "index_path")) if index_set else str(root / "search.db")
        )
        bus = InProcessBus(log_path, clock)
        position = embedded = EmbeddedLogPosition(log_path)
    engine: SearchEngine
    if read_one(SearchConfig, "engine") == "solr":
        engine, where = _solr_engine_from_env()
    else:
        engine, where = Fts5Engine(index_path), index_path
    await engine.open()
    try:
        print(f"reindex: index {where}", file=out, flush=True)
        return await reindex(
            bus,
            engine,
            position,
            checkpoint_path(index_path),
            clock,
            conversation_id=conversation_id,
            limit=limit,
            restart=restart,
            out=out,
        )
    finally:
        await engine.close()
        if embedded is not None:
            embedded.close()
        await bus.close()
