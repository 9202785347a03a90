"""What media_service learns from an upload's bytes, never from the client's word.

Everything here is synchronous CPU work on bytes already in memory: media_service runs it in a
worker thread so it never blocks the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class MediaRejectedError(Exception):
    """The bytes are not acceptable; `reason` is a short machine-readable word, the message says
    why for a person (e.g. reason "infected", message "matches the EICAR test signature")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A downscaled rendition; `size` is its name ("small", "large")."""

    size: str
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """An image after processing: `data` is the original re-encoded without metadata (no EXIF,
    no GPS, orientation applied to the pixels), to be stored instead of the upload."""

    data: bytes
    content_type: str
    width: int
    height: int
    thumbnails: tuple[Thumbnail, ...]
    blurhash: str


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    clean: bool
    # Why not clean, for the media record and the log (e.g. "EICAR test signature").
    detail: str = ""


class Scanner(Protocol):
    """A malware scan hook (built-in EICAR check, ClamAV, an ICAP service, ...)."""

    async def scan(self, data: bytes) -> ScanVerdict: ...
