"""What every search engine offers the indexer and the query path: one Protocol, one contract
suite (tests/search/test_engine_contract.py) run on every engine."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Document:
    """One message as indexed. `version` orders edits: an older version never replaces a newer."""

    conversation_id: str
    seq: int
    sender_id: str
    sent_at_ms: int
    version: int
    body: str


class EngineUnavailable(RuntimeError):
    """The engine's server could not be reached or failed the request (safe to retry)."""


class Order(enum.Enum):
    NEWEST = "newest"
    RELEVANCE = "relevance"


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    # Only these conversations (the caller's, as chat_service says now); never empty.
    conversations: Sequence[str]
    sender_id: str = ""
    after_ms: int | None = None
    before_ms: int | None = None
    order: Order = Order.NEWEST
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    conversation_id: str
    seq: int
    sender_id: str
    sent_at_ms: int
    version: int
    snippet: str
    # (start, end) code point ranges of the matched words in snippet.
    highlights: tuple[tuple[int, int], ...] = field(default=())


class SearchEngine(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, doc: Document) -> None:
        """Indexes `doc`, replacing an older version; does nothing for a removed message or an
        older or equal version (at-least-once delivery is harmless)."""
        ...

    async def remove(self, conversation_id: str, seq: int) -> None:
        """Removes the message for good: a later upsert of it does nothing."""
        ...

    async def purge_conversation(self, conversation_id: str) -> None:
        """Removes every message of a conversation (retention)."""
        ...

    async def search(self, query: Query) -> list[Hit]:
        """At most `query.limit` hits after `query.offset`."""
        ...
