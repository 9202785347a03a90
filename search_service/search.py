"""The query path: what a user may find, decided at query time.

The index may lag behind the log, so it is only a candidate list. Each query is restricted to
the conversations the caller is a member of now (asked of chat_service), and every candidate is
re-read from the store through chat_service before it is returned: a deleted message is never
returned (even if the index has not seen the delete), an edited one shows its current text, or
is dropped when that text no longer matches.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatmesh.chat.v1 import types_pb2

from .engines.base import Hit, Order, Query, SearchEngine
from .engines.fts5 import WORD

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
SNIPPET_CHARS = 160


class SearchRefused(ValueError):
    """The request is malformed (INVALID_ARGUMENT)."""


class NotAMember(PermissionError):
    """The request names a conversation the caller is not a member of (PERMISSION_DENIED)."""


class SearchAccess(Protocol):
    async def searchable_conversations(self, user_id: str) -> list[str]: ...

    async def current_messages(
        self, user_id: str, refs: Sequence[tuple[str, int]]
    ) -> list[types_pb2.Message]:
        """The current, undeleted messages among `refs` the user may read now."""
        ...


@dataclass(frozen=True, slots=True)
class SearchRequest:
    user_id: str
    text: str
    conversation_id: str = ""
    sender_id: str = ""
    after_ms: int | None = None
    before_ms: int | None = None
    order: Order = Order.NEWEST
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[Hit]
    next_page_token: str


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_cursor(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SearchRefused("page_token is not a token of this service") from exc
    if not raw.startswith("o") or not raw[1:].isdigit():
        raise SearchRefused("page_token is not a token of this service")
    return int(raw[1:])


def highlight(body: str, text: str) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    """A snippet of `body` with the query's words highlighted; None when it does not match
    (every word, the last as a prefix, case-insensitive), like the engines."""
    words = [w.casefold() for w in WORD.findall(text)]
    tokens = [(m.start(), m.end(), m.group().casefold()) for m in WORD.finditer(body)]
    matched: list[tuple[int, int]] = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        spans = [(a, b) for a, b, t in tokens if (t.startswith(word) if last else t == word)]
        if not spans:
            return None
        matched.extend(spans)
    matched.sort()
    start = max(0, matched[0][0] - SNIPPET_CHARS // 4)
    end = min(len(body), start + SNIPPET_CHARS)
    ranges = tuple((a - start, b - start) for a, b in matched if a >= start and b <= end)
    return body[start:end], ranges


class Search:
    def __init__(self, engine: SearchEngine, access: SearchAccess) -> None:
        self.engine = engine
        self.access = access

    async def search(self, request: SearchRequest) -> SearchPage:
        if not WORD.search(request.text):
            raise SearchRefused("query must hold at least one word")
        if request.page_size < 0:
            raise SearchRefused("page_size must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = decode_cursor(request.page_token)
        conversations = await self.access.searchable_conversations(request.user_id)
        if request.conversation_id:
            if request.conversation_id not in conversations:
                raise NotAMember("not a member of this conversation")
            conversations = [request.conversation_id]
        candidates = await self.engine.search(
            Query(
                request.text,
                conversations,
                sender_id=request.sender_id,
                after_ms=request.after_ms,
                before_ms=request.before_ms,
                order=request.order,
                limit=size,
                offset=offset,
            )
        )
        current = {
            (m.conversation_id, m.seq): m
            for m in await self.access.current_messages(
                request.user_id, [(h.conversation_id, h.seq) for h in candidates]
            )
        }
        hits = []
        for hit in candidates:
            message = current.get((hit.conversation_id, hit.seq))
            if message is None or message.deleted:
                continue
            if message.version != hit.version:
                fresh = highlight(message.body, request.text)
                if fresh is None:
                    continue
                snippet, ranges = fresh
                hit = Hit(
                    hit.conversation_id,
                    hit.seq,
                    hit.sender_id,
                    hit.sent_at_ms,
                    message.version,
                    snippet,
                    ranges,
                )
            hits.append(hit)
        more = len(candidates) == size
        return SearchPage(hits, encode_cursor(offset + size) if more else "")
