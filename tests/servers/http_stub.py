"""A local HTTP/1.1 server (hypercorn, in the test's event loop) for standing in for a
third-party HTTP API: subclasses answer whole requests; this module does the serving.

`hold()` lets a handler hang the way an overloaded service does; `stop()` releases held
requests first, so shutdown never waits on them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, cast

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import Framework

from tests.servers.ports import free_port


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    # Lower-cased names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class HttpStub:
    """Serve `handle` on 127.0.0.1 at a free port: `async with Subclass(...) as server:`."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._shutdown = asyncio.Event()
        self._released = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    async def hold(self) -> None:
        """Wait until the server stops: a request that never gets an answer in time."""
        await self._released.wait()

    async def start(self) -> None:
        self.port = free_port(self.host)
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.graceful_timeout = 1.0
        config.accesslog = None
        config.errorlog = None
        self._task = asyncio.create_task(
            serve(cast(Framework, self._asgi), config, shutdown_trigger=self._shutdown.wait)
        )
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"{type(self).__name__}: the server exited on start")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        self._released.set()
        self._shutdown.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunks.append(event.get("body", b""))
            if not event.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(scope["method"], scope["path"], headers, b"".join(chunks))
        response = await self.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
