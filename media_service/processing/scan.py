"""Malware scan hooks: the built-in EICAR check, clamd (INSTREAM over TCP), and a chain of both.

A scanner that cannot answer raises ScannerUnavailableError: media_service answers UNAVAILABLE
and the upload stays pending (a retry scans again), rather than accepting unscanned bytes.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

from .base import Scanner, ScanVerdict

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_CHUNK = 64 * 1024


class ScannerUnavailableError(Exception):
    pass


class EicarScanner:
    """Refuses the EICAR test file (anywhere in the bytes), so scanning is testable end to end."""

    async def scan(self, data: bytes) -> ScanVerdict:
        if EICAR in data:
            return ScanVerdict(False, "matches the EICAR test signature")
        return ScanVerdict(True)


class ClamdScanner:
    """clamd's INSTREAM command: length-prefixed chunks, a zero-length end, one reply line."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s

    async def scan(self, data: bytes) -> ScanVerdict:
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await asyncio.open_connection(self._host, self._port)
                try:
                    writer.write(b"zINSTREAM\0")
                    for start in range(0, len(data), _CHUNK):
                        chunk = data[start : start + _CHUNK]
                        writer.write(struct.pack("!I", len(chunk)) + chunk)
                        await writer.drain()
                    writer.write(struct.pack("!I", 0))
                    await writer.drain()
                    reply = (await reader.readuntil(b"\0")).rstrip(b"\0").decode(errors="replace")
                finally:
                    writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise ScannerUnavailableError(f"clamd at {self._host}:{self._port}: {exc}") from exc
        if reply.endswith(" OK"):
            return ScanVerdict(True)
        if reply.endswith(" FOUND"):
            name = reply.removeprefix("stream:").removesuffix("FOUND").strip()
            return ScanVerdict(False, f"clamd found {name}")
        raise ScannerUnavailableError(f"clamd answered {reply!r}")


class ChainScanner:
    """Every scanner in turn; the first verdict that is not clean wins."""

    def __init__(self, scanners: Sequence[Scanner]) -> None:
        self._scanners = tuple(scanners)

    async def scan(self, data: bytes) -> ScanVerdict:
        for scanner in self._scanners:
            verdict = await scanner.scan(data)
            if not verdict.clean:
                return verdict
        return ScanVerdict(True)
