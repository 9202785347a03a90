"""The fault proxy itself, against a plain echo server: each mode does what it says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from .proxy import FaultProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

IO_TIMEOUT_S = 10.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = FaultProxy(server.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.close()


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(IO_TIMEOUT_S):
        return await reader.readexactly(len(data))


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the proxy closed or reset the connection (nothing is echoed)."""
    try:
        async with asyncio.timeout(IO_TIMEOUT_S):
            return await reader.read(1) == b""
    except ConnectionError:
        return True


async def test_pass_forwards_bytes_both_ways(proxy: FaultProxy) -> None:
    """In pass mode the proxy is invisible: what goes up comes back unchanged."""
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"hello" * 1000) == b"hello" * 1000
    writer.close()


async def test_latency_keeps_every_byte_in_order(proxy: FaultProxy) -> None:
    """With added latency, many small writes still arrive complete and in order."""
    proxy.set_latency(0.05)
    reader, writer = await _open(proxy)
    chunks = [f"{i:04d};".encode() for i in range(50)]
    for chunk in chunks:
        writer.write(chunk)
    await writer.drain()
    async with asyncio.timeout(IO_TIMEOUT_S):
        echoed = await reader.readexactly(sum(map(len, chunks)))
    assert echoed == b"".join(chunks)
    writer.close()


async def test_drop_new_closes_new_connections_only(proxy: FaultProxy) -> None:
    """Dropping: a new connection is closed at once, one opened before keeps working."""
    old_reader, old_writer = await _open(proxy)
    assert await _round_trip(old_reader, old_writer, b"before") == b"before"
    proxy.drop_new()
    new_reader, new_writer = await _open(proxy)
    new_writer.write(b"x")
    assert await _closed(new_reader)
    assert proxy.counts.dropped == 1
    assert await _round_trip(old_reader, old_writer, b"still") == b"still"
    proxy.pass_through()
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"again") == b"again"
    for w in (old_writer, new_writer, writer):
        w.close()


async def test_cut_resets_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    """A cut resets every open connection; the next connection goes through."""
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer, b"up") == b"up"
    assert proxy.cut() == 1
    assert await _closed(reader)
    reader2, writer2 = await _open(proxy)
    assert await _round_trip(reader2, writer2, b"new") == b"new"
    writer.close()
    writer2.close()
