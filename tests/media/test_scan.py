"""Scanners: the EICAR check, clamd's INSTREAM wire format, chaining, and a scanner that cannot
answer raising instead of passing the bytes as clean.

clamd itself is not available here; a small asyncio server that speaks INSTREAM stands in for it.
It checks only the wire format (command, chunk framing, terminator, replies), not detection."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from media_service.processing.base import MediaRejectedError, ScanVerdict
from media_service.processing.scan import (
    ChainScanner,
    ClamdScanner,
    EicarScanner,
    ScannerUnavailableError,
)
from tests.media import samples

pytestmark = pytest.mark.timeout(10)


@dataclass
class FakeClamd:
    """What the stand-in received, and how it answers."""

    reply: Callable[[bytes], bytes] = lambda data: (
        b"stream: Eicar-Signature FOUND\0" if samples.EICAR in data else b"stream: OK\0"
    )
    silent: bool = False
    commands: list[bytes] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)
    streams: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.commands.append(await reader.readuntil(b"\0"))
            received = bytearray()
            while True:
                (size,) = struct.unpack(">I", await reader.readexactly(4))
                self.chunk_sizes.append(size)
                if size == 0:
                    break
                received += await reader.readexactly(size)
            self.streams.append(bytes(received))
            if self.silent:
                await asyncio.sleep(30)
            writer.write(self.reply(bytes(received)))
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def clamd() -> AsyncIterator[FakeClamd]:
    fake = FakeClamd()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_eicar_scanner_flags_the_test_signature() -> None:
    """The EICAR file, at the start or behind a prefix, is not clean."""
    scanner = EicarScanner()
    assert not (await scanner.scan(samples.EICAR)).clean
    verdict = await scanner.scan(b"some prefix\n" + samples.EICAR + b"\n")
    assert verdict == ScanVerdict(clean=False, detail="EICAR test signature")


async def test_eicar_scanner_passes_ordinary_files() -> None:
    """Images and text without the signature are clean."""
    scanner = EicarScanner()
    assert (await scanner.scan(samples.jpeg())).clean
    assert (await scanner.scan(samples.text())).clean


async def test_clamd_clean_reply_is_clean_and_framing_is_instream(clamd: FakeClamd) -> None:
    """zINSTREAM, length-prefixed chunks and a zero-length end; "stream: OK" is clean."""
    data = bytes(range(256)) * 1000  # 256000 bytes: several chunks
    verdict = await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(data)
    assert verdict.clean
    assert clamd.commands == [b"zINSTREAM\0"]
    assert clamd.streams == [data]
    assert clamd.chunk_sizes[-1] == 0
    assert len(clamd.chunk_sizes) > 2
    assert sum(clamd.chunk_sizes) == len(data)


async def test_clamd_found_reply_names_the_signature(clamd: FakeClamd) -> None:
    """ "stream: <name> FOUND" is not clean, with the name as detail."""
    verdict = await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(samples.EICAR)
    assert verdict == ScanVerdict(clean=False, detail="Eicar-Signature")


async def test_clamd_empty_upload_sends_only_the_terminator(clamd: FakeClamd) -> None:
    """No bytes: the command and the zero-length chunk."""
    assert (await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(b"")).clean
    assert clamd.chunk_sizes == [0]


async def test_clamd_size_limit_is_too_large(clamd: FakeClamd) -> None:
    """clamd's stream size limit refuses the upload rather than making the scanner unavailable."""
    clamd.reply = lambda _data: b"INSTREAM size limit exceeded. ERROR\0"
    with pytest.raises(MediaRejectedError) as caught:
        await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(b"x" * 10)
    assert caught.value.reason == "too_large"


async def test_clamd_error_reply_is_unavailable(clamd: FakeClamd) -> None:
    """Any other ERROR reply is no verdict."""
    clamd.reply = lambda _data: b"Can't allocate memory ERROR\0"
    with pytest.raises(ScannerUnavailableError):
        await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(b"x")


async def test_clamd_hanging_up_without_reply_is_unavailable(clamd: FakeClamd) -> None:
    """A connection closed before any reply is no verdict."""
    clamd.reply = lambda _data: b""
    with pytest.raises(ScannerUnavailableError):
        await ClamdScanner("127.0.0.1", clamd.port, timeout_s=5).scan(b"x")


async def test_unreachable_clamd_is_unavailable() -> None:
    """Nothing listening: ScannerUnavailableError, never a clean verdict."""
    with pytest.raises(ScannerUnavailableError):
        await ClamdScanner("127.0.0.1", free_port(), timeout_s=2).scan(b"x")


async def test_silent_clamd_times_out_as_unavailable(clamd: FakeClamd) -> None:
    """A clamd that never answers is unavailable after the timeout."""
    clamd.silent = True
    with pytest.raises(ScannerUnavailableError):
        await ClamdScanner("127.0.0.1", clamd.port, timeout_s=0.3).scan(b"x")


class Fixed:
    def __init__(self, verdict: ScanVerdict) -> None:
        self.verdict = verdict
        self.calls = 0

    async def scan(self, data: bytes) -> ScanVerdict:
        self.calls += 1
        return self.verdict


async def test_chain_returns_the_first_unclean_verdict() -> None:
    """Scanners run in order; the first that is not clean decides and the rest do not run."""
    clean = Fixed(ScanVerdict(clean=True))
    infected = Fixed(ScanVerdict(clean=False, detail="first"))
    later = Fixed(ScanVerdict(clean=False, detail="second"))
    verdict = await ChainScanner([clean, infected, later]).scan(b"x")
    assert verdict == ScanVerdict(clean=False, detail="first")
    assert (clean.calls, infected.calls, later.calls) == (1, 1, 0)


async def test_chain_of_clean_scanners_is_clean() -> None:
    """All clean (or no scanners at all) is clean."""
    assert (await ChainScanner([EicarScanner(), Fixed(ScanVerdict(True))]).scan(b"x")).clean
    assert (await ChainScanner([]).scan(b"x")).clean


async def test_chain_passes_unavailability_on() -> None:
    """A scanner that cannot answer makes the chain unable to answer."""
    chain = ChainScanner([EicarScanner(), ClamdScanner("127.0.0.1", free_port(), timeout_s=1)])
    with pytest.raises(ScannerUnavailableError):
        await chain.scan(b"x")
