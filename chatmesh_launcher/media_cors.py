"""`chatmesh dev`'s CORS front of the media URL server, so the web client can upload from a page.

The web client is served by the gateway (http://<ws host:port>/) while presigned media URLs point
at media_service's own HTTP server on another port: another origin, and a browser sends a `PUT`
to another origin only after a CORS preflight that server does not answer. In dev the media URLs
(CHATMESH_MEDIA_PUBLIC_URL) point here instead. This relay answers the preflight for the web
client's origins (the gateway's port on its host, 127.0.0.1 or localhost), passes every other
request through unchanged (the signature checks stay media_service's), and adds
`Access-Control-Allow-Origin` to the answer. One request per connection (`Connection: close`).
A cluster puts its object store's own CORS rules in front of the browser instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"upgrade"}


def _split_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _sep, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _join_head(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"\r\n".join([first, *(n + b": " + v for n, v in headers)]) + b"\r\n\r\n"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class MediaCorsRelay:
    """Relays requests on `sock` to the media URL server at host:`upstream_port()`."""

    def __init__(
        self, sock: socket.socket, upstream_host: str, allowed_origins: Callable[[], set[str]]
    ) -> None:
        self._sock = sock
        self._upstream_host = upstream_host
        self._upstream_port = 0
        self._allowed_origins = allowed_origins
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server = await asyncio.start_server(self._serve, sock=self._sock)

    async def stop(self) -> None:
        if self._server is None:
            self._sock.close()
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def _cors(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or origin.decode("latin-1") not in self._allowed_origins():
            return []
        return [(b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin")]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(self._relay(reader, writer), 60)
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            log.debug("media relay connection dropped", exc_info=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            return
        first, headers = _split_head(head)
        method = first.split(b" ", 1)[0]
        cors = self._cors(_header(headers, b"origin"))
        if method == b"OPTIONS":
            allow = cors and [
                (b"Access-Control-Allow-Methods", b"GET, HEAD, PUT, POST"),
                (
                    b"Access-Control-Allow-Headers",
                    _header(headers, b"access-control-request-headers") or b"content-type",
                ),
                (b"Access-Control-Max-Age", b"600"),
            ]
            status = b"HTTP/1.1 204 No Content" if cors else b"HTTP/1.1 403 Forbidden"
            extra = [(b"Content-Length", b"0"), (b"Connection", b"close")]
            writer.write(_join_head(status, [*cors, *(allow or []), *extra]))
            await writer.drain()
            return
        if _header(headers, b"transfer-encoding") is not None:
            # Bodies are relayed by Content-Length only (as presigned uploads send them).
            writer.write(
                _join_head(
                    b"HTTP/1.1 411 Length Required",
                    [*cors, (b"Content-Length", b"0"), (b"Connection", b"close")],
                )
            )
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(
            self._upstream_host, self._upstream_port
        )
        try:
            forwarded = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]
            up_writer.write(_join_head(first, [*forwarded, (b"Connection", b"close")]))
            length = int(_header(headers, b"content-length") or b"0")
            while length > 0:
                chunk = await reader.read(min(_CHUNK, length))
                if not chunk:
                    return
                length -= len(chunk)
                up_writer.write(chunk)
                await up_writer.drain()
            await up_writer.drain()
            answer = await up_reader.readuntil(b"\r\n\r\n")
            status, answer_headers = _split_head(answer)
            kept = [(n, v) for n, v in answer_headers if n.lower() not in _HOP_BY_HOP]
            writer.write(_join_head(status, [*kept, *cors, (b"Connection", b"close")]))
            while chunk := await up_reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
            await writer.drain()
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
