"""A local webhook receiver, as a gateway author would write one: it checks `Chatmesh-Signature`
with `verify_signature` over the raw body (401 when it does not verify) and records the JSON.
A push whose `Idempotency-Key` it accepted before is answered 204 and counted in `repeats`, not
recorded again: the receiver drops the repeat a crash of notify_service can cause.

Scripted behaviour per path: `gone` (410), `fail_next` (any status, N times, optional
Retry-After), `hang` (no answer until stopped).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chatmesh_common.clock import Clock, SystemClock
from notify_service.providers.base import Platform, PushTarget
from notify_service.providers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    verify_signature,
)
from tests.servers.http_stub import HttpStub, Request, Response


@dataclass
class Received:
    path: str
    body: bytes
    payload: Any
    headers: dict[str, str]


@dataclass
class _Script:
    gone: bool = False
    hanging: bool = False
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)


class LocalWebhookReceiver(HttpStub):
    def __init__(self, secret: str | bytes, clock: Clock | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.clock = clock or SystemClock()
        self.received: list[Received] = []
        # Idempotency keys accepted, and the copies of them dropped since, by key.
        self.accepted_keys: set[str] = set()
        self.repeats: Counter[str] = Counter()
        # Requests refused for their signature: (path, Chatmesh-Signature header).
        self.rejected: list[tuple[str, str | None]] = []
        self._scripts: dict[str, _Script] = {}

    def url(self, path: str = "/hook") -> str:
        return f"{self.origin}{path}"

    def target(self, path: str = "/hook") -> PushTarget:
        return PushTarget(Platform.WEBHOOK, self.url(path))

    def _script(self, path: str) -> _Script:
        return self._scripts.setdefault(path, _Script())

    def gone(self, path: str = "/hook") -> None:
        self._script(path).gone = True

    def fail_next(
        self, status: int, *, path: str = "/hook", times: int = 1, retry_after: str | None = None
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._script(path).scripted.extend([(status, headers)] * times)

    def hang(self, path: str = "/hook") -> None:
        self._script(path).hanging = True

    async def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405)
        signature = request.headers.get(SIGNATURE_HEADER.lower())
        if not verify_signature(self.secret, signature, request.body, now=self.clock.now()):
            self.rejected.append((request.path, signature))
            return Response(401, body=b"bad signature")
        script = self._script(request.path)
        if script.gone:
            return Response(410)
        if script.hanging:
            await self.hold()
            return Response(503)
        if script.scripted:
            status, headers = script.scripted.pop(0)
            return Response(status, headers)
        if request.headers.get("content-type") != "application/json":
            return Response(415)
        key = request.headers.get(IDEMPOTENCY_HEADER.lower())
        if key is not None and key in self.accepted_keys:
            self.repeats[key] += 1
            return Response(204)
        if key is not None:
            self.accepted_keys.add(key)
        payload = json.loads(request.body)
        self.received.append(Received(request.path, request.body, payload, dict(request.headers)))
        return Response(204)
