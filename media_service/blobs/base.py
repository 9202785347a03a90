"""What every blob store offers media_service: one Protocol, one contract suite
(tests/media/test_blob_contract.py) run on the embedded filesystem store and on S3.

Keys are opaque ASCII paths chosen by media_service (`[A-Za-z0-9/_.-]`, no leading slash).
Clients never talk to the store through media_service: they get presigned URLs, upload and
download directly, and the store itself refuses an expired URL, a tampered signature or a body
over the signed size limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class BlobUnavailableError(Exception):
    """The store cannot be reached or answered with a server error: retry later (UNAVAILABLE)."""


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    """How a client uploads one object, without credentials of its own.

    `method` "POST": a multipart/form-data POST to `url` with every entry of `fields` as a form
    field, then the bytes as the form field `file` (S3 POST policy, content-length-range signed).
    `method` "PUT": a PUT of the raw bytes to `url` with every entry of `headers` set.
    """

    method: str
    url: str
    expires_at_ms: int
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int


class BlobStore(Protocol):
    """An object store. Every method may raise BlobUnavailableError."""

    async def open(self) -> None:
        """Connect and make sure the bucket (or directory) exists."""

    async def close(self) -> None: ...

    async def presign_upload(
        self, key: str, *, max_size: int, content_type: str, expires_s: float
    ) -> PresignedUpload:
        """An upload of at most `max_size` bytes to `key`, valid for `expires_s` seconds."""

    async def presign_download(
        self, key: str, *, expires_s: float, content_type: str, file_name: str
    ) -> str:
        """A GET URL for `key` valid for `expires_s`, served with this type and as this file
        name (Content-Disposition), whatever the object's own metadata says."""

    async def stat(self, key: str) -> BlobInfo | None:
        """The object's size, or None when there is no such object."""

    async def read(self, key: str, *, limit: int) -> bytes:
        """The object's first `limit` bytes (all of it when smaller). KeyError when missing."""

    async def write(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store `data` at `key` (media_service's own writes: cleaned originals, thumbnails)."""

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these objects; a missing one is not an error."""

    async def list_keys(self, prefix: str, *, limit: int = 1000) -> list[str]:
        """Up to `limit` keys starting with `prefix`, sorted (for the sweeper and tests)."""
