"""Malware scanners for uploads: the built-in EICAR check, clamd over TCP, and a chain of both.

A scanner that cannot give a verdict raises ScannerUnavailableError: media_service answers
UNAVAILABLE then, rather than store bytes nobody scanned."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

from media_service.processing.base import MediaRejectedError, Scanner, ScanVerdict

EICAR_SIGNATURE = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

CLEAN = ScanVerdict(clean=True)

# clamd's default StreamMaxLength is 25 MiB; chunks well below its buffer size.
_CLAMD_CHUNK_BYTES = 64 * 1024
_CLAMD_MAX_REPLY_BYTES = 4096


class ScannerUnavailableError(Exception):
    """The scanner could not be reached or did not answer; the upload is neither clean nor
    infected, and must not be accepted."""


class EicarScanner:
    """Finds the EICAR test signature. By convention the test file starts with it; it is looked
    for anywhere, so a signature behind a prefix or inside an archive member stored uncompressed
    is caught too."""

    async def scan(self, data: bytes) -> ScanVerdict:
        if EICAR_SIGNATURE in data:
            return ScanVerdict(clean=False, detail="EICAR test signature")
        return CLEAN


class ClamdScanner:
    """Streams the bytes to clamd with INSTREAM and reads its verdict."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s

    async def scan(self, data: bytes) -> ScanVerdict:
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._instream(data)
        except TimeoutError as exc:
            raise ScannerUnavailableError(
                f"clamd at {self._host}:{self._port} did not answer within {self._timeout_s}s"
            ) from exc
        except OSError as exc:
            raise ScannerUnavailableError(
                f"clamd at {self._host}:{self._port} unreachable: {exc}"
            ) from exc
        return _verdict(reply)

    async def _instream(self, data: bytes) -> str:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            try:
                writer.write(b"zINSTREAM\0")
                for start in range(0, len(data), _CLAMD_CHUNK_BYTES):
                    chunk = data[start : start + _CLAMD_CHUNK_BYTES]
                    writer.write(struct.pack(">I", len(chunk)) + chunk)
                    await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
            except ConnectionError:
                # clamd replies and hangs up when the stream passes its size limit; the reply
                # is still readable.
                pass
            raw = await reader.readuntil(b"\0")
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
            if not raw:
                raise ScannerUnavailableError("clamd hung up without a reply") from exc
        except asyncio.LimitOverrunError as exc:
            raise ScannerUnavailableError("clamd sent an overlong reply") from exc
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
        return raw.rstrip(b"\0\n")[:_CLAMD_MAX_REPLY_BYTES].decode("utf-8", "replace")


def _verdict(reply: str) -> ScanVerdict:
    """clamd's reply: "stream: OK", "stream: <signature> FOUND" or "<message> ERROR"."""
    body = reply.split(": ", 1)[1] if reply.startswith("stream: ") else reply
    if body == "OK":
        return CLEAN
    if body.endswith(" FOUND"):
        return ScanVerdict(clean=False, detail=body.removesuffix(" FOUND"))
    if "size limit exceeded" in body:
        raise MediaRejectedError("too_large", "larger than the malware scanner accepts")
    raise ScannerUnavailableError(f"clamd could not scan: {reply}")


class ChainScanner:
    """Runs scanners in order and returns the first verdict that is not clean."""

    def __init__(self, scanners: Sequence[Scanner]) -> None:
        self._scanners = tuple(scanners)

    async def scan(self, data: bytes) -> ScanVerdict:
        for scanner in self._scanners:
            verdict = await scanner.scan(data)
            if not verdict.clean:
                return verdict
        return CLEAN
