"""The cluster engine: Apache Solr 9 in SolrCloud mode, over its HTTP API.

One collection per deployment, created on open (with the configset in solr_configset/, uploaded
first when the cluster lacks it). A message is the document "<conversation_id>:<seq>".

Idempotency lives in Solr, on the shard leader: the configset's update chain runs
DocBasedVersionConstraintsProcessorFactory, which drops an update whose `version` is not above
the indexed one, and turns a delete by id into a tombstone carrying the `del_version` parameter.
Removes send the largest version there is, so no redelivered create or edit gets past them.

Visibility: Solr shows an update to searches only after a commit. Each write bumps a counter;
a search first soft-commits when this engine wrote since its last commit, so the engine's own
writes are visible to its next query (an explicit soft commit, not commitWithin, which bounds
the wait but does not end it), and closing the engine commits what it wrote. Writes by other
processes become visible within the configset's autoSoftCommit (1 s).

Writes: upserts and removes made while an update request is in flight wait and go together in
the next one (the indexer's lanes write several conversations at once), so the index rate is
not one round trip per message. A failed request fails each of its writers, whose events come
again (at-least-once); the version check makes the retry harmless.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from .base import Document, EngineUnavailable, Hit, Order, Query

log = logging.getLogger(__name__)

CONFIGSET_DIR = Path(__file__).resolve().parent / "solr_configset"
DEFAULT_COLLECTION = "chatmesh-messages"
DEFAULT_CONFIGSET = "chatmesh-messages"

# Private-use code points: never in a message that matters, and kept apart from the text.
_OPEN, _CLOSE = "\ue000", "\ue001"
_ELLIPSIS = "…"
_REMOVED = 2**63 - 1  # a tombstone's version: above any edit's
_WORD = re.compile(r"\w+", re.UNICODE)
_FIELDS = "id,conversation_id,seq,sender_id,sent_at_ms,version,body"
_PURGE_PAGE = 500
_BATCH = 500  # update commands in one request at most
# How long a snippet is, about as long as the fts5 engine's 24 tokens.
SNIPPET_CHARS = 160


def message_id(conversation_id: str, seq: int) -> str:
    return f"{conversation_id}:{seq}"


def solr_query(text: str) -> str:
    """Every word must match, the last one also as a prefix; words are quoted, so no query
    syntax leaks. The exact form of the last word keeps it scored: a prefix query alone is
    constant-score, and relevance would not see how often the word occurs."""
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        raise ValueError("the query has no words")
    clauses = [f'+body:"{w}"' for w in words[:-1]]
    last = words[-1]
    clauses.append(f'+(body:"{last}" body:{last}*)')
    return " ".join(clauses)


def split_marks(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The snippet without its markers, and where the marked ranges are."""
    out: list[str] = []
    ranges: list[tuple[int, int]] = []
    start = length = 0
    for ch in marked:
        if ch == _OPEN:
            start = length
        elif ch == _CLOSE:
            ranges.append((start, length))
        else:
            out.append(ch)
            length += 1
    return "".join(out), tuple(ranges)


def snippet(body: str, marked: str | None) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The highlighted fragment, with an ellipsis where it cuts the body (as fts5 does)."""
    if marked is None:
        return body[:SNIPPET_CHARS], ()
    text, ranges = split_marks(marked)
    at = body.find(text)
    if at < 0:  # the fragment was trimmed of spaces at its ends
        stripped = text.strip()
        at = body.find(stripped)
    before = _ELLIPSIS if at > 0 else ""
    after = _ELLIPSIS if at >= 0 and at + len(text) < len(body) else ""
    shift = len(before)
    return before + text + after, tuple((a + shift, b + shift) for a, b in ranges)


def _settle(batch: Sequence[tuple[str, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():  # its writer was cancelled
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def configset_zip(directory: Path = CONFIGSET_DIR) -> bytes:
    """The configset as the configset API takes it: its files at the zip's root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                archive.write(path, path.name)
    return buffer.getvalue()


class SolrEngine:
    def __init__(
        self,
        url: str,
        collection: str = DEFAULT_COLLECTION,
        *,
        configset: str = DEFAULT_CONFIGSET,
        shards: int = 1,
        replicas: int = 1,
        timeout_s: float = 30.0,
    ) -> None:
        self._url = url.rstrip("/")
        self.collection = collection
        self._configset = configset
        self._shards = shards
        self._replicas = replicas
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        # Writes acknowledged, and writes known to be committed: a search commits when they
        # differ.
        self._written = 0
        self._committed = 0
        self._commit_lock = asyncio.Lock()
        # Update commands waiting for the request in flight to end; the next one takes them all.
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.requests_sent = 0  # update requests, for the tests of the batching

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "the engine is not open"
        return self._client

    async def open(self) -> None:
        self._client = httpx.AsyncClient(base_url=self._url, timeout=self._timeout_s)
        try:
            await self._ensure_configset()
            await self._ensure_collection()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._client is None:
            return
        if self._sender is not None:
            await asyncio.wait([self._sender])
        try:
            # What this engine wrote is searchable by others once it is closed, not a second
            # later (a rebuild ends, and its user searches at once).
            await self._make_visible()
        except EngineUnavailable as exc:
            log.warning("solr engine closed with writes not yet committed: %s", exc)
        finally:
            await self._client.aclose()
            self._client = None

    async def upsert(self, doc: Document) -> None:
        fields = {
            "id": message_id(doc.conversation_id, doc.seq),
            "conversation_id": doc.conversation_id,
            "seq": doc.seq,
            "sender_id": doc.sender_id,
            "sent_at_ms": doc.sent_at_ms,
            "version": doc.version,
            "body": doc.body,
        }
        await self._write('"add":' + json.dumps({"doc": fields}))

    async def remove(self, conversation_id: str, seq: int) -> None:
        await self._write('"delete":' + json.dumps({"id": message_id(conversation_id, seq)}))

    async def purge_conversation(self, conversation_id: str) -> None:
        # Tombstones one page of ids at a time (a delete by query would leave none behind).
        await self._make_visible()
        cursor = "*"
        while True:
            page = await self._select(
                {
                    "q": "*:*",
                    "fq": "{!term f=conversation_id v=$conversation}",
                    "conversation": conversation_id,
                    "fl": "id",
                    "sort": "id asc",
                    "rows": str(_PURGE_PAGE),
                    "cursorMark": cursor,
                }
            )
            ids = [d["id"] for d in page["response"]["docs"]]
            if ids:
                await self._update(json.dumps({"delete": ids}), 1)
            following = page.get("nextCursorMark", cursor)
            if not ids or following == cursor:
                return
            cursor = following

    async def search(self, query: Query) -> list[Hit]:
        if not query.conversations:
            return []
        q = solr_query(query.text)
        params: dict[str, str | list[str]] = {
            "q": q,
            "conversations": "\n".join(query.conversations),
            "fl": _FIELDS,
            "start": str(query.offset),
            "rows": str(query.limit),
            "sort": "score desc, sent_at_ms desc"
            if query.order is Order.RELEVANCE
            else "sent_at_ms desc, conversation_id asc, seq desc",
            "hl": "true",
            "hl.method": "unified",
            "hl.fl": "body",
            "hl.tag.pre": _OPEN,
            "hl.tag.post": _CLOSE,
            "hl.bs.type": "WORD",
            "hl.fragsize": str(SNIPPET_CHARS),
            "hl.fragAlignRatio": "0.25",
        }
        filters = ["{!terms f=conversation_id separator=$nl v=$conversations}"]
        params["nl"] = "\n"
        if query.sender_id:
            filters.append("{!term f=sender_id v=$sender}")
            params["sender"] = query.sender_id
        if query.after_ms is not None or query.before_ms is not None:
            low = "*" if query.after_ms is None else str(query.after_ms)
            high = "*" if query.before_ms is None else str(query.before_ms)
            filters.append(f"sent_at_ms:[{low} TO {high}}}")
        params["fq"] = filters
        await self._make_visible()
        answer = await self._select(params)
        marked: Mapping[str, Any] = answer.get("highlighting", {})
        hits = []
        for d in answer["response"]["docs"]:
            fragments = marked.get(d["id"], {}).get("body") or [None]
            text, ranges = snippet(d.get("body", ""), fragments[0])
            hits.append(
                Hit(
                    d["conversation_id"],
                    int(d["seq"]),
                    d["sender_id"],
                    int(d["sent_at_ms"]),
                    int(d["version"]),
                    text,
                    ranges,
                )
            )
        return hits

    # -- HTTP ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        data: Mapping[str, str | Sequence[str]] | None = None,
        json_body: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self.client.request(
                method,
                path,
                params={"wt": "json", **(params or {})},
                data=data,
                json=json_body,
                content=content,
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"Solr at {self._url}: {exc!r}") from exc
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.is_error:
            message = body.get("error", {}).get("msg") or response.text[:500]
            raise EngineUnavailable(f"Solr {path} answered {response.status_code}: {message}")
        return body

    async def _select(self, params: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        # A form body, not a URL: the caller's conversation list can be long.
        return await self._request("POST", f"/{self.collection}/select", data=params)

    async def _update(self, body: str, writes: int) -> None:
        """One update request. Every delete in it tombstones (the del_version parameter; the
        version check ignores it for adds)."""
        await self._request(
            "POST",
            f"/{self.collection}/update",
            params={"del_version": str(_REMOVED)},
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        # Counted once acknowledged: a commit that started earlier may not hold them.
        self._written += writes
        self.requests_sent += 1

    async def _write(self, command: str) -> None:
        """Sends one update command, joined with those of other writers waiting meanwhile (the
        lanes of the indexer): one request per round trip, not one per message."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((command, done))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_pending())
        await done

    async def _send_pending(self) -> None:
        batch: list[tuple[str, asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                # A JSON object may repeat "add" and "delete": Solr applies them in order.
                body = "{" + ",".join(command for command, _ in batch) + "}"
                try:
                    await self._update(body, len(batch))
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
                batch = []
        except BaseException as exc:  # cancelled: no writer may wait for ever
            failed = EngineUnavailable(f"Solr update interrupted: {exc!r}")
            _settle([*batch, *self._pending], failed)
            self._pending = []
            raise
        finally:
            self._sender = None

    async def _make_visible(self) -> None:
        """Soft-commits when this engine wrote since its last commit; concurrent searches
        share one commit, and a write sent during it is left to the next."""
        if self._committed >= self._written:
            return
        async with self._commit_lock:
            target = self._written
            if self._committed >= target:
                return
            await self._request(
                "POST",
                f"/{self.collection}/update",
                params={"commit": "true", "softCommit": "true", "waitSearcher": "true"},
                json_body=[],
            )
            self._committed = max(self._committed, target)

    async def _ensure_configset(self) -> None:
        listed = await self._request("GET", "/admin/configs", params={"action": "LIST"})
        if self._configset in listed.get("configSets", []):
            return
        await self._request(
            "POST",
            "/admin/configs",
            params={"action": "UPLOAD", "name": self._configset},
            content=configset_zip(),
            headers={"Content-Type": "application/octet-stream"},
        )

    async def _ensure_collection(self) -> None:
        if await self._collection_exists():
            return
        try:
            await self._request(
                "POST",
                "/admin/collections",
                params={
                    "action": "CREATE",
                    "name": self.collection,
                    "collection.configName": self._configset,
                    "numShards": str(self._shards),
                    "replicationFactor": str(self._replicas),
                    "waitForFinalState": "true",
                },
            )
        except EngineUnavailable:
            # Another replica of search_service may have created it at the same moment.
            if not await self._collection_exists():
                raise

    async def _collection_exists(self) -> bool:
        listed = await self._request("GET", "/admin/collections", params={"action": "LIST"})
        return self.collection in listed.get("collections", [])
