"""The embedded blob store: objects as files under one root directory, uploaded and downloaded
through the small HTTP server of fs_http.py with HMAC-signed URLs.

Layout: `<root>/objects/<key>~` holds an object, `<root>/tmp/` its uploads in progress. The
`~` suffix (outside the key alphabet) keeps "a" and "a/b" both possible as keys, as on S3: the
file of "a" is `a~`, the directory holding "a/b" is `a`. Every write goes to a temp file in
`tmp/` (same filesystem) and is renamed into place, so a reader sees a whole object or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

from chatmesh_common.clock import Clock
from media_service.blobs.base import BlobInfo, PresignedUpload
from media_service.blobs.keys import InvalidKeyError, validate_key
from media_service.blobs.signing import signature, signature_matches

_SUFFIX = "~"


def _check_header_value(name: str, value: str) -> None:
    # The server sends it back as a header: printable ASCII only, so no header injection.
    if not value or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{name} must be non-empty printable ASCII")


class FsBlobStore:
    """BlobStore on a local directory; presigned URLs point at `base_url` (an FsBlobHttpServer
    serving this store).

        store = FsBlobStore("/var/lib/chatmesh/blobs", secret, "http://127.0.0.1:9107", clock)
    """

    def __init__(
        self, root: str | os.PathLike[str], secret: bytes | str, base_url: str, clock: Clock
    ) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._secret = secret.encode() if isinstance(secret, str) else secret
        if not self._secret:
            raise ValueError("secret must not be empty")
        self.base_url = base_url.rstrip("/")
        self.clock = clock

    async def open(self) -> None:
        await asyncio.to_thread(self._make_dirs)

    def _make_dirs(self) -> None:
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Uploads interrupted by a crash leave temp files that no one will finish.
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()

    async def close(self) -> None:
        pass

    # --- presigned URLs -------------------------------------------------------------------

    def _expires(self, expires_s: float) -> int:
        return math.ceil(self.clock.now() + expires_s)

    async def presign_upload(
        self, key: str, *, max_size: int, content_type: str, expires_s: float
    ) -> PresignedUpload:
        validate_key(key)
        _check_header_value("content_type", content_type)
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        expires = self._expires(expires_s)
        sig = signature(self._secret, "PUT", key, str(expires), str(max_size), content_type)
        query = urlencode({"expires": expires, "max": max_size, "ct": content_type, "sig": sig})
        return PresignedUpload(
            method="PUT",
            url=f"{self.base_url}/blobs/{key}?{query}",
            expires_at_ms=expires * 1000,
            headers={"Content-Type": content_type},
        )

    async def presign_download(
        self, key: str, *, expires_s: float, content_type: str, file_name: str
    ) -> str:
        validate_key(key)
        _check_header_value("content_type", content_type)
        expires = self._expires(expires_s)
        sig = signature(self._secret, "GET", key, str(expires), content_type, file_name)
        query = urlencode({"expires": expires, "ct": content_type, "fn": file_name, "sig": sig})
        return f"{self.base_url}/blobs/{key}?{query}"

    def check_upload(
        self, key: str, expires: str, max_size: str, content_type: str, sig: str
    ) -> str | None:
        """Why a PUT with these URL parameters is refused, or None when it is allowed."""
        if not signature_matches(self._secret, sig, "PUT", key, expires, max_size, content_type):
            return "signature does not match"
        return self._expired(expires)

    def check_download(
        self, key: str, expires: str, content_type: str, file_name: str, sig: str
    ) -> str | None:
        """Why a GET or HEAD with these URL parameters is refused, or None when allowed."""
        if not signature_matches(self._secret, sig, "GET", key, expires, content_type, file_name):
            return "signature does not match"
        return self._expired(expires)

    def _expired(self, expires: str) -> str | None:
        # The signature covers `expires`, so it is a decimal we wrote ourselves.
        return "URL expired" if self.clock.now() > int(expires) else None

    # --- files ----------------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        return self._objects / (validate_key(key) + _SUFFIX)

    def new_temp(self) -> tuple[Path, IO[bytes]]:
        """A fresh temp file for an upload (blocking); commit() or discard() it."""
        path = self._tmp / secrets.token_hex(16)
        return path, path.open("xb")

    def commit(self, temp: Path, key: str) -> None:
        """Move a complete temp file into place as `key` (blocking, atomic)."""
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)

    @staticmethod
    def discard(temp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()

    async def stat(self, key: str) -> BlobInfo | None:
        path = self.path_of(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(size=st.st_size)

    async def read(self, key: str, *, limit: int) -> bytes:
        path = self.path_of(key)

        def _read() -> bytes:
            try:
                with path.open("rb") as f:
                    return f.read(max(limit, 0))
            except (FileNotFoundError, NotADirectoryError):
                raise KeyError(key) from None

        return await asyncio.to_thread(_read)

    async def write(self, key: str, data: bytes, *, content_type: str) -> None:
        validate_key(key)

        def _write() -> None:
            temp, f = self.new_temp()
            try:
                with f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self.commit(temp, key)
            except BaseException:
                self.discard(temp)
                raise

        await asyncio.to_thread(_write)

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self.path_of(key) for key in keys]

        def _delete() -> None:
            for path in paths:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    path.unlink()
                self._prune_dirs(path.parent)

        await asyncio.to_thread(_delete)

    def _prune_dirs(self, directory: Path) -> None:
        # Empty directories left by deleted objects; a concurrent write may refill one, which
        # rmdir then refuses (and commit() recreates one removed under it).
        while directory != self._objects:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    async def list_keys(self, prefix: str, *, limit: int = 1000) -> list[str]:
        def _list() -> list[str]:
            # Walk only the deepest directory the prefix names entirely.
            start = self._objects
            if "/" in prefix:
                directory = prefix.rsplit("/", 1)[0]
                try:
                    validate_key(directory)
                except InvalidKeyError:
                    return []  # no key lies under a directory that is not a valid key path
                start = start / directory
            found: list[str] = []
            for dirpath, _dirs, files in os.walk(start):
                rel = Path(dirpath).relative_to(self._objects).as_posix()
                base = "" if rel == "." else rel + "/"
                for name in files:
                    if name.endswith(_SUFFIX):
                        key = base + name[: -len(_SUFFIX)]
                        if key.startswith(prefix):
                            found.append(key)
            found.sort()
            return found[:limit]

        return await asyncio.to_thread(_list)
