"""A TCP fault proxy between two tiers (e.g. gateway -> chat_service gRPC), asyncio.

    proxy = FaultProxy(upstream_port=chat.port)
    await proxy.start()             # listens on proxy.port; point the client tier at proxy.target
    proxy.set_latency(0.2)          # every chunk, both ways, arrives 200 ms late (order kept)
    proxy.drop_new()                # new connections are accepted and closed at once
    proxy.cut()                     # every open connection is reset now
    proxy.pass_through()            # back to normal (latency 0, new connections forwarded)
    await proxy.stop()

Modes switch at run time and apply to what flows next, so a test can change them while traffic
runs. The proxy counts what it did, for the figures of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass

from tests.servers.ports import free_port

_CHUNK = 64 * 1024


@dataclass
class ProxyCounts:
    accepted: int = 0
    dropped: int = 0
    cut: int = 0


class _Link:
    """One client connection and its upstream connection, pumped both ways."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writers = [client]
        self.tasks: list[asyncio.Task[None]] = []

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forwards one direction. Latency is a delay from arrival, not a pause per chunk: each
        chunk is written `latency_s` after it was read, in order, however many are in flight."""
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        delivering = asyncio.ensure_future(self._deliver(due, writer))
        self.tasks.append(delivering)
        try:
            while data := await reader.read(_CHUNK):
                due.put_nowait((time.monotonic() + self.proxy.latency_s, data))
            due.put_nowait((time.monotonic() + self.proxy.latency_s, b""))  # end of stream
            await delivering
        except (ConnectionError, OSError):
            self.reset()

    async def _deliver(
        self, due: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                at, data = await due.get()
                # Switching latency off applies at once, also to what is already queued.
                delay = min(at - time.monotonic(), self.proxy.latency_s)
                if delay > 0:
                    await asyncio.sleep(delay)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self.reset()

    def reset(self) -> None:
        """Closes both sides with RST (SO_LINGER 0), as a broken network would."""
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            writer.transport.abort()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream_port`, with faults switched at run time."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.latency_s = 0.0
        self.dropping = False
        self.counts = ProxyCounts()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    # -- modes ----------------------------------------------------------------------------------

    def pass_through(self) -> None:
        self.latency_s = 0.0
        self.dropping = False

    def set_latency(self, seconds: float) -> None:
        self.latency_s = seconds

    def drop_new(self) -> None:
        self.dropping = True

    def cut(self) -> int:
        """Resets every open connection; how many there were."""
        links, self._links = self._links, set()
        for link in links:
            link.reset()
        self.counts.cut += len(links)
        return len(links)

    # -- connections ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self, writer)
        if self.dropping:
            self.counts.dropped += 1
            link.reset()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            link.reset()
            return
        link.writers.append(up_writer)
        if self.dropping:  # switched while connecting upstream
            self.counts.dropped += 1
            link.reset()
            return
        self.counts.accepted += 1
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(link.pump(reader, up_writer)),
            asyncio.ensure_future(link.pump(up_reader, writer)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for w in link.writers:
                w.close()
