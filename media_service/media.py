"""The rules of media: who may upload, what an upload must be to become READY, who may download.

Everything here talks to Protocols (MediaStore, BlobStore, Scanner, MediaAccess); the servicer
turns requests into calls and the errors into gRPC statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import grpc

from chatmesh_common.clock import Clock
from chatmesh_common.ratelimit import RateLimiter
from chatmesh_common.rpc import RpcError, denied, invalid, not_found, precondition

from .blobs.base import BlobStore, BlobUnavailableError, PresignedUpload
from .processing.base import MediaRejectedError, ProcessedImage, Scanner
from .processing.images import IMAGE_TYPES, process_image
from .processing.scan import ScannerUnavailableError
from .processing.sniff import allowed, sniff
from .store.base import MediaRecord, MediaStore, State

log = logging.getLogger(__name__)

GENERIC_TYPE = "application/octet-stream"
THUMBNAIL_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
_EXTENSIONS = {v: k for k, v in THUMBNAIL_TYPES.items()}


class MediaAccess(Protocol):
    """What chat_service answers media_service (AccessService, service credential)."""

    async def membership(self, user_id: str, conversation_id: str) -> int | None:
        """The conversation's kind when the user is a member now, else None."""

    async def message_attaches(
        self, user_id: str, conversation_id: str, seq: int, media_id: str
    ) -> bool:
        """Whether the user may read message `seq` now and it attaches `media_id`."""


@dataclass(frozen=True, slots=True)
class MediaRules:
    max_object_bytes: int = 25 * 1024 * 1024
    allow_list: tuple[str, ...] = ("image/*", "video/mp4", "audio/mpeg", "application/pdf")
    upload_url_s: float = 600.0
    download_url_s: float = 300.0
    uploads_per_minute: int = 30
    quota_bytes_per_day: int = 1024 * 1024 * 1024
    thumbnail_sizes: tuple[tuple[str, int], ...] = (("small", 320), ("large", 1280))
    max_file_name_chars: int = 255


@dataclass(frozen=True, slots=True)
class Upload:
    record: MediaRecord
    presigned: PresignedUpload
    max_size: int


def upload_key(media_id: str) -> str:
    """Where the app uploads; the checked original moves to an object named by its hash."""
    return f"uploads/{media_id}"


def object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


def thumbnail_key(sha256: str, size: str, content_type: str) -> str:
    return f"thumbs/{sha256[:2]}/{sha256}/{size}{_EXTENSIONS.get(content_type, '.bin')}"


def thumbnail_type(key: str) -> str:
    return THUMBNAIL_TYPES.get(os.path.splitext(key)[1], GENERIC_TYPE)


def _unavailable(exc: Exception) -> RpcError:
    return RpcError(grpc.StatusCode.UNAVAILABLE, f"object store unavailable: {exc}", 1.0)


def _check_file_name(name: str, most: int) -> None:
    if not name or not name.strip():
        raise invalid("file_name is required")
    if len(name) > most:
        raise invalid(f"file_name must be at most {most} characters")
    if "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        raise invalid("file_name must be a bare name: no path separators or control characters")


def _same_family(declared: str, sniffed: str) -> bool:
    if declared in ("", GENERIC_TYPE) or declared == sniffed:
        return True
    return declared.split("/")[0] == sniffed.split("/")[0]


class Media:
    def __init__(
        self,
        store: MediaStore,
        blobs: BlobStore,
        access: MediaAccess,
        scanner: Scanner,
        clock: Clock,
        rules: MediaRules = MediaRules(),
        *,
        processing_slots: int | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.access = access
        self.scanner = scanner
        self.clock = clock
        self.rules = rules
        per_s = rules.uploads_per_minute / 60.0
        self._upload_rate = RateLimiter(per_s, max(1, rules.uploads_per_minute), clock.monotonic)
        # Image work runs in threads; this bounds how many at once so completions queue instead
        # of every upload decoding a large image at the same time.
        self._processing = asyncio.Semaphore(processing_slots or max(1, (os.cpu_count() or 2)))

    # Uploads

    async def create_upload(
        self, user_id: str, conversation_id: str, file_name: str, size: int, content_type: str
    ) -> Upload:
        rules = self.rules
        if not conversation_id:
            raise invalid("conversation_id is required")
        _check_file_name(file_name, rules.max_file_name_chars)
        if size <= 0:
            raise invalid("size_bytes must be positive")
        if size > rules.max_object_bytes:
            raise invalid(f"size_bytes {size} is over the limit of {rules.max_object_bytes} bytes")
        content_type = content_type.strip().lower() or GENERIC_TYPE
        if content_type != GENERIC_TYPE and not allowed(content_type, rules.allow_list):
            raise invalid(f"content_type {content_type} is not allowed")
        kind = await self.access.membership(user_id, conversation_id)
        if kind is None:
            raise denied(f"not a member of conversation {conversation_id}")
        wait = self._upload_rate.acquire(user_id)
        if wait > 0:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {rules.uploads_per_minute} uploads a minute",
                wait,
            )
        now = self.clock.now()
        used = await self.store.uploaded_bytes_since(user_id, now - 86400)
        if used + size > rules.quota_bytes_per_day:
            raise RpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"upload quota: {used} of {rules.quota_bytes_per_day} bytes used in 24 hours",
                3600.0,
            )
        record = MediaRecord(
            media_id="m_" + secrets.token_urlsafe(16),
            conversation_id=conversation_id,
            conversation_kind=kind,
            uploader_id=user_id,
            state=State.PENDING,
            file_name=file_name,
            content_type=content_type,
            size_bytes=size,
            created_at=now,
        )
        # The signed limit is the declared size: the store refuses a bigger body.
        try:
            presigned = await self.blobs.presign_upload(
                upload_key(record.media_id),
                max_size=size,
                content_type=content_type,
                expires_s=rules.upload_url_s,
            )
        except BlobUnavailableError as exc:
            raise _unavailable(exc) from exc
        await self.store.create(record)
        return Upload(record, presigned, size)

    async def _owned(self, user_id: str, media_id: str) -> MediaRecord:
        if not media_id:
            raise invalid("media_id is required")
        record = await self.store.get(media_id)
        if record is None or record.deleted_at is not None:
            raise not_found(f"media {media_id} not found")
        if record.uploader_id != user_id:
            raise denied(f"media {media_id} was uploaded by another user")
        return record

    async def complete_upload(self, user_id: str, media_id: str) -> MediaRecord:
        record = await self._owned(user_id, media_id)
        if record.state is not State.PENDING:
            return record  # completing twice answers the first outcome
        try:
            done = await self._complete(record)
        except BlobUnavailableError as exc:
            raise _unavailable(exc) from exc
        except ScannerUnavailableError as exc:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, f"malware scanner: {exc}", 1.0) from exc
        if not await self.store.update(done, expect=State.PENDING):
            current = await self.store.get(media_id)
            return current or done
        log.info(
            "media %s %s (%s, %d bytes%s)",
            media_id,
            done.state.name.lower(),
            done.content_type,
            done.size_bytes,
            f", {done.reject_reason}" if done.reject_reason else "",
        )
        return done

    async def _reject(self, record: MediaRecord, reason: str, detail: str) -> MediaRecord:
        await self.blobs.delete([upload_key(record.media_id)])
        return replace(record, state=State.REJECTED, reject_reason=reason, reject_detail=detail)

    async def _complete(self, record: MediaRecord) -> MediaRecord:
        key = upload_key(record.media_id)
        info = await self.blobs.stat(key)
        if info is None:
            raise precondition(f"nothing was uploaded for media {record.media_id} yet")
        limit = min(self.rules.max_object_bytes, record.size_bytes)
        if info.size > limit:
            return await self._reject(
                record, "too_large", f"{info.size} bytes uploaded; at most {limit} were allowed"
            )
        if info.size == 0:
            return await self._reject(record, "empty", "the uploaded object is empty")
        data = await self.blobs.read(key, limit=limit + 1)
        sniffed = sniff(data)
        if not allowed(sniffed, self.rules.allow_list):
            return await self._reject(
                record, "type_not_allowed", f"the bytes are {sniffed}, which is not allowed"
            )
        if not _same_family(record.content_type, sniffed):
            return await self._reject(
                record,
                "type_mismatch",
                f"declared {record.content_type} but the bytes are {sniffed}",
            )
        try:
            verdict = await self.scanner.scan(data)
        except MediaRejectedError as exc:
            return await self._reject(record, exc.reason, str(exc))
        if not verdict.clean:
            return await self._reject(record, "infected", verdict.detail or "the scan failed")
        image: ProcessedImage | None = None
        if sniffed in IMAGE_TYPES:
            sizes = dict(self.rules.thumbnail_sizes)
            try:
                async with self._processing:
                    image = await asyncio.to_thread(
                        process_image, data, sniffed, thumbnail_sizes=sizes
                    )
            except MediaRejectedError as exc:
                return await self._reject(record, exc.reason, str(exc))
        stored = image.data if image is not None else data
        # Hashing 25 MiB takes tens of milliseconds: off the event loop like the image work.
        digest = await asyncio.to_thread(lambda: hashlib.sha256(stored).hexdigest())
        final_key = object_key(digest)
        # Identical bytes share one object.
        if await self.blobs.stat(final_key) is None:
            await self.blobs.write(final_key, stored, content_type=sniffed)
        thumbnails: dict[str, str] = {}
        if image is not None:
            for thumb in image.thumbnails:
                tkey = thumbnail_key(digest, thumb.size, thumb.content_type)
                if await self.blobs.stat(tkey) is None:
                    await self.blobs.write(tkey, thumb.data, content_type=thumb.content_type)
                thumbnails[thumb.size] = tkey
        await self.blobs.delete([key])
        return replace(
            record,
            state=State.READY,
            content_type=image.content_type if image is not None else sniffed,
            size_bytes=len(stored),
            blob_key=final_key,
            sha256=digest,
            width=image.width if image is not None else 0,
            height=image.height if image is not None else 0,
            blurhash=image.blurhash if image is not None else "",
            thumbnails=thumbnails,
        )

    # Reads

    async def get(self, user_id: str, media_id: str) -> MediaRecord:
        record = await self._readable(user_id, media_id, 0)
        return record

    async def _readable(self, user_id: str, media_id: str, message_seq: int) -> MediaRecord:
        if not media_id:
            raise invalid("media_id is required")
        record = await self.store.get(media_id)
        if record is None or record.deleted_at is not None:
            raise not_found(f"media {media_id} not found")
        if await self.access.membership(user_id, record.conversation_id) is None:
            raise denied(f"not a member of the conversation of media {media_id}")
        if record.uploader_id == user_id and not message_seq:
            return record
        if record.state is not State.READY:
            raise not_found(f"media {media_id} not found")
        seqs = [message_seq] if message_seq else []
        seqs += [r.seq for r in await self.store.references(media_id) if not r.deleted]
        for seq in dict.fromkeys(seqs):
            if await self.access.message_attaches(user_id, record.conversation_id, seq, media_id):
                return record
        raise not_found(f"media {media_id} is not attached to a message you can read")

    async def download_url(
        self, user_id: str, media_id: str, variant: str, message_seq: int
    ) -> tuple[str, float]:
        record = await self._readable(user_id, media_id, message_seq)
        if record.state is not State.READY:
            raise precondition(f"media {media_id} is not ready")
        if variant:
            key = record.thumbnails.get(variant)
            if key is None:
                raise not_found(f"media {media_id} has no {variant!r} thumbnail")
            content_type = thumbnail_type(key)
            stem, _, ext = record.file_name.rpartition(".")
            name = f"{stem or ext}-{variant}{_EXTENSIONS.get(content_type, '')}"
        else:
            key, content_type, name = record.blob_key, record.content_type, record.file_name
        expires_s = self.rules.download_url_s
        try:
            url = await self.blobs.presign_download(
                key, expires_s=expires_s, content_type=content_type, file_name=name
            )
        except BlobUnavailableError as exc:
            raise _unavailable(exc) from exc
        return url, self.clock.now() + expires_s

    # Attachments (asked by chat_service before it stores a message)

    async def resolve(
        self, sender_id: str, conversation_id: str, media_ids: Sequence[str]
    ) -> list[MediaRecord]:
        found = []
        for media_id in media_ids:
            record = await self.store.get(media_id)
            if record is None or record.deleted_at is not None:
                raise invalid(f"attachments: media {media_id} not found")
            if record.uploader_id != sender_id:
                raise denied(f"attachments: media {media_id} was uploaded by another user")
            if record.conversation_id != conversation_id:
                raise invalid(f"attachments: media {media_id} belongs to another conversation")
            if record.state is not State.READY:
                raise invalid(
                    f"attachments: media {media_id} is {record.state.name.lower()}, not ready"
                )
            found.append(record)
        return found
