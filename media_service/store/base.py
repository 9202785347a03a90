"""What media_service keeps about each upload: one Protocol, one contract suite
(tests/media/test_media_store_contract.py)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class State(enum.IntEnum):
    PENDING = 1
    READY = 2
    REJECTED = 3


@dataclass(frozen=True, slots=True)
class MediaRecord:
    media_id: str
    conversation_id: str
    # The conversation's kind at upload time (chat's ConversationKind number), for retention.
    conversation_kind: int
    uploader_id: str
    state: State
    file_name: str
    # As declared until READY, then as sniffed and measured.
    content_type: str
    size_bytes: int
    created_at: float
    # The blob key of the original (shared by duplicates: the key is derived from the sha256).
    blob_key: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    blurhash: str = ""
    # Thumbnail size name -> blob key.
    thumbnails: dict[str, str] = field(default_factory=dict)
    reject_reason: str = ""
    reject_detail: str = ""
    # When its last message was deleted (or retention purged it): unreachable from then on.
    deleted_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    """A message that attaches a media id."""

    conversation_id: str
    seq: int
    deleted: bool = False


class MediaStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, record: MediaRecord) -> None:
        """A new PENDING record; the media id is new (ValueError when it exists)."""

    async def get(self, media_id: str) -> MediaRecord | None: ...

    async def update(self, record: MediaRecord, *, expect: State) -> bool:
        """Replaces the record if its stored state is still `expect`; False when it was not
        (another CompleteUpload won)."""

    async def add_reference(
        self, media_id: str, conversation_id: str, seq: int, created_at: float
    ) -> None:
        """Records that message (conversation_id, seq), sent at `created_at`, attaches the
        media (idempotent)."""

    async def references(self, media_id: str) -> list[Reference]: ...

    async def delete_message(self, conversation_id: str, seq: int, now: float) -> list[str]:
        """Marks the message's references deleted; media left with no live reference get
        deleted_at = now. Returns the ids of media that became deleted."""

    async def uploaded_bytes_since(self, uploader_id: str, since: float) -> int:
        """Bytes of the uploader's media created since `since` (pending: declared size;
        rejected ones do not count), for the storage quota."""

    async def expired_pending(self, created_before: float, limit: int) -> list[MediaRecord]:
        """PENDING records created before the time: abandoned uploads."""

    async def deleted_before(self, deleted_before: float, limit: int) -> list[MediaRecord]:
        """Records deleted before the time whose objects may now be removed."""

    async def created_before(
        self, conversation_kind: int, created_before: float, limit: int
    ) -> list[MediaRecord]:
        """Live (not deleted) records of conversations of this kind whose newest message (or,
        never attached, whose upload) is older than the time: retention has purged them."""

    async def purge(self, media_ids: Sequence[str]) -> None:
        """Forgets these records and their references (their objects are gone)."""

    async def blob_in_use(self, blob_key: str, except_media_id: str) -> bool:
        """Whether a live record other than `except_media_id` still uses this blob key (duplicates
        share storage; the object stays while one of them lives)."""
