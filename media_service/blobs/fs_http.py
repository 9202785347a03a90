"""The HTTP server behind FsBlobStore's presigned URLs: PUT uploads, GET and HEAD downloads of
`/blobs/{key}`, each allowed only by a valid, unexpired signature from the store.

HTTP/1.1 framing is h11's (no I/O of its own); this module does the asyncio stream I/O around
it. Upload bodies go to disk chunk by chunk, never more than the signed limit, and become
visible only when complete. A request h11 cannot parse gets a 400 and its connection is closed;
nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection
from typing import IO, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import h11

from media_service.blobs.fs import FsBlobStore
from media_service.blobs.keys import InvalidKeyError, validate_key
from media_service.blobs.signing import attachment_disposition

log = logging.getLogger(__name__)

T = TypeVar("T")

_PREFIX = "/blobs/"
_CHUNK = 64 * 1024
# After refusing a body we have not read, keep reading (and dropping) it for a moment before
# closing: closing a socket with unread data makes the kernel send RST, and the client could
# lose our response before reading it.
_LINGER_S = 1.0
_LINGER_BYTES = 4 * 1024 * 1024


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Conn:
    """One client connection: an h11 state machine over an asyncio stream pair."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.h11 = h11.Connection(h11.SERVER)
        self.idle = True  # waiting for the next request: stop() may close it at once
        # CORS headers for the current request's answer (empty: no allowed Origin).
        self.cors: list[tuple[str, str]] = []

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # only after a full cycle, which _requests() restarts
                raise h11.LocalProtocolError("next_event() while paused")
            data = await asyncio.wait_for(self.reader.read(_CHUNK), self.timeout)
            self.h11.receive_data(data)  # b"" is EOF, which h11 turns into an event or error

    def skip_received_body(self) -> bool:
        """Drop the request body h11 already holds; True when that was all of it (always so
        for a request without a body), so the connection can serve another request."""
        while self.h11.their_state is h11.SEND_BODY:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return False
        return True

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def send_text(self, status: int, text: str, *, close: bool = False) -> None:
        body = text.encode() + b"\n"
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        if close:
            headers.append(("Connection", "close"))
        headers += self.cors
        await self.send(h11.Response(status_code=status, headers=headers))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def linger(self) -> None:
        """Drop what the client still sends, briefly, then let the caller close."""
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
        dropped = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LINGER_S
        with contextlib.suppress(OSError, TimeoutError):
            while dropped < _LINGER_BYTES:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                data = await asyncio.wait_for(self.reader.read(_CHUNK), remaining)
                if not data:
                    break
                dropped += len(data)


class FsBlobHttpServer:
    """Serves `store`'s objects on host:port (port 0: any free one, see `port` after start()).

    server = FsBlobHttpServer(store, "127.0.0.1", 9107)
    await server.start() ... await server.stop()
    """

    def __init__(
        self,
        store: FsBlobStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 30.0,
        cors_origins: Collection[str] = (),
    ) -> None:
        self.store = store
        # Browser origins allowed to upload and download from their pages (CORS), like an S3
        # bucket's CORS rules; `chatmesh dev` sets its web client's once the gateway is bound.
        self.cors_origins: set[str] = set(cors_origins)
        self.host = host
        self._port = port
        self.timeout = timeout
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[Any], _Conn] = {}
        self._stopping = False

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._stopping = False
        self._server = await asyncio.start_server(self._serve, self.host, self._port)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, give requests in flight `grace` seconds,
        then abort their connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._port = server.sockets[0].getsockname()[1] if server.sockets else self._port
        self._stopping = True  # a connection finishing its request now closes, not waits
        server.close()
        for conn in self._conns.values():
            if conn.idle:
                conn.writer.close()
        if self._conns:
            _done, pending = await asyncio.wait(list(self._conns), timeout=grace)
            if pending:
                for conn in list(self._conns.values()):
                    conn.writer.transport.abort()  # their reads and writes fail at once
                _done, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(reader, writer, self.timeout)
        self._conns[task] = conn
        try:
            await self._requests(conn)
        except h11.RemoteProtocolError as e:
            if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(Exception):
                    await conn.send_text(e.error_status_hint, f"malformed request: {e}", close=True)
        except (OSError, TimeoutError, h11.LocalProtocolError) as e:
            log.debug("blob http connection dropped: %r", e)
        except Exception:
            log.exception("blob http connection failed")
        except asyncio.CancelledError:
            # Only stop() cancels, as a last resort; this task is the connection's own, with
            # nobody awaiting it but stop(), which expects it to end.
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _requests(self, conn: _Conn) -> None:
        while not self._stopping:
            conn.idle = True
            event = await conn.next_event()
            conn.idle = False
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (or a client that only sent half a request)
            try:
                await self._route(conn, event)
            except _Refused as refused:
                # The body may be unread: answer, then close instead of keeping alive.
                body_pending = not conn.skip_received_body()
                await conn.send_text(refused.status, refused.reason, close=body_pending)
                if body_pending:
                    await conn.linger()
            if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
            else:
                return

    async def _route(self, conn: _Conn, request: h11.Request) -> None:
        try:
            target = request.target.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(400, "request target must be ASCII") from None
        split = urlsplit(target)
        if not split.path.startswith(_PREFIX):
            raise _Refused(404, "not found")
        key = split.path[len(_PREFIX) :]
        try:
            validate_key(key)
        except InvalidKeyError as e:
            raise _Refused(400, str(e)) from None
        params: dict[str, str] = {}
        for name, values in parse_qs(split.query, keep_blank_values=True).items():
            if len(values) != 1:
                raise _Refused(400, f"query parameter {name} given more than once")
            params[name] = values[0]
        method = request.method.decode("ascii", "replace")
        origin = next((v for n, v in request.headers if n.lower() == b"origin"), b"")
        allowed = origin.decode("latin-1") in self.cors_origins
        conn.cors = [("Access-Control-Allow-Origin", origin.decode("latin-1"))] if allowed else []
        conn.cors += [("Vary", "Origin")]
        if method == "OPTIONS":
            await self._preflight(conn, allowed)
        elif method == "PUT":
            await self._upload(conn, request, key, params)
        elif method in ("GET", "HEAD"):
            conn.skip_received_body()
            await self._download(conn, method, key, params)
        else:
            raise _Refused(405, "method not allowed: use PUT, GET, HEAD or OPTIONS")

    @staticmethod
    async def _preflight(conn: _Conn, allowed: bool) -> None:
        """A browser asks whether its page may PUT or GET here; the signature is checked on the
        request that follows, not now."""
        conn.skip_received_body()
        if not allowed:
            raise _Refused(403, "origin not allowed")
        headers = [
            ("Content-Length", "0"),
            ("Access-Control-Allow-Methods", "PUT, GET, HEAD"),
            ("Access-Control-Allow-Headers", "content-type"),
            ("Access-Control-Max-Age", "600"),
            *conn.cors,
        ]
        await conn.send(h11.Response(status_code=204, headers=headers))
        await conn.send(h11.EndOfMessage())

    @staticmethod
    def _signed(params: dict[str, str], names: tuple[str, ...]) -> list[str]:
        try:
            return [params[name] for name in names]
        except KeyError as e:
            raise _Refused(403, f"missing signed parameter {e.args[0]}") from None

    async def _upload(
        self, conn: _Conn, request: h11.Request, key: str, params: dict[str, str]
    ) -> None:
        expires, max_text, content_type, sig = self._signed(params, ("expires", "max", "ct", "sig"))
        reason = self.store.check_upload(key, expires, max_text, content_type, sig)
        if reason:
            raise _Refused(403, reason)
        max_size = int(max_text)  # signed by the store, so a decimal it wrote
        headers = {name.lower(): value for name, value in request.headers}
        if b"transfer-encoding" in headers or b"content-length" not in headers:
            raise _Refused(411, "Content-Length required")
        length = int(headers[b"content-length"])  # h11 checked it is a decimal
        if length > max_size:
            raise _Refused(413, f"body of {length} bytes is over the signed limit of {max_size}")
        if length == 0:
            raise _Refused(400, "empty body")
        if headers.get(b"content-type", b"").decode("latin-1") != content_type:
            raise _Refused(403, "Content-Type differs from the signed one")
        if conn.h11.they_are_waiting_for_100_continue:
            await conn.send(h11.InformationalResponse(status_code=100, headers=[]))

        temp, f = await _disk(self.store.new_temp)
        committed = False
        try:
            received = 0
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Data):
                    received += len(event.data)
                    if received > max_size:  # h11 holds the body to Content-Length; still
                        raise _Refused(413, f"body over the signed limit of {max_size}")
                    await _disk(f.write, event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise h11.RemoteProtocolError("unexpected event in body", 400)
            await _disk(_finish, f)
            await _disk(self.store.commit, temp, key)
            committed = True
        finally:
            if not committed:
                # Also on cancellation (stop()) and disconnects: nothing partial stays.
                f.close()
                self.store.discard(temp)
        await conn.send_text(201, "stored")

    async def _download(self, conn: _Conn, method: str, key: str, params: dict[str, str]) -> None:
        expires, content_type, file_name, sig = self._signed(params, ("expires", "ct", "fn", "sig"))
        reason = self.store.check_download(key, expires, content_type, file_name, sig)
        if reason:
            raise _Refused(403, reason)
        path = self.store.path_of(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise _Refused(404, "no such object") from None
        try:
            size = os.fstat(f.fileno()).st_size
            await conn.send(
                h11.Response(
                    status_code=200,
                    headers=[
                        ("Content-Type", content_type),
                        ("Content-Length", str(size)),
                        ("Content-Disposition", attachment_disposition(file_name)),
                        ("X-Content-Type-Options", "nosniff"),
                        ("Cache-Control", "private"),
                        *conn.cors,
                    ],
                )
            )
            if method == "GET":
                while chunk := await asyncio.to_thread(f.read, _CHUNK):
                    await conn.send(h11.Data(data=chunk))
            await conn.send(h11.EndOfMessage())
        finally:
            f.close()


async def _disk(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread; a filesystem error (disk full, permissions) becomes a 500, told
    apart from the socket errors that only end the connection."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as e:
        log.exception("blob store filesystem error")
        raise _Refused(500, "storage error") from e


def _finish(f: IO[bytes]) -> None:
    with f:
        f.flush()
        os.fsync(f.fileno())
