"""Attachments end to end through the WebSocket edge of `chatmesh dev` (fs blob store): an app
uploads to the presigned URL with a real HTTP client, completes, attaches, and another member
gets metadata (never a URL), then fetches a signed download URL and a thumbnail. Refusals: an
executable declared as PNG, EICAR, an upload over its size, another conversation's or another
user's media, a non-member's download, a deleted message's media."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.media.v1 import media_service_pb2 as media_pb
from PIL import ExifTags, Image

from chatmesh_common.clock import ManualClock
from media_service.sweeper import MediaSweeper, SweepPolicy
from tests.gateway.client import ServerError
from tests.media.support import (
    EICAR,
    ELF,
    Dev,
    fetch,
    jpeg_with_gps,
    send,
    start_dev,
    upload_bytes,
    uploaded,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    async with start_dev(tmp_path) as system:
        yield system


def code(exc: pytest.ExceptionInfo[ServerError]) -> str:
    return gateway_pb2.ErrorCode.Name(exc.value.code)


async def test_photo_upload_attach_and_download_without_gps(dev: Dev) -> None:
    alice, bob = await dev.connect("alice"), await dev.connect("bob")
    cid = await alice.create_group("bob")
    media = await uploaded(alice, cid, jpeg_with_gps(), name="beach.jpg")
    assert media.state == media_pb.MEDIA_STATE_READY, media.reject_detail
    info = media.attachment
    assert (info.content_type, info.width, info.height) == ("image/jpeg", 64, 48)
    assert info.blurhash and list(info.thumbnails) == ["large", "small"]

    sent = await send(alice, cid, "look", [media.media_id], "photo-1")
    seq = sent.send_message.message.seq
    event = await bob.next_event()
    while event.WhichOneof("payload") != "message_created":
        event = await bob.next_event()
    message = event.message_created.message
    assert list(message.attachments) == [media.media_id]
    shown = message.attachment_info[0]
    assert (shown.file_name, shown.width, shown.blurhash) == ("beach.jpg", 64, info.blurhash)
    assert "http" not in str(message)  # metadata only: no URL in events

    link = await bob.call("get_download_url", media_id=media.media_id, message_seq=seq)
    original = await fetch(link.get_download_url.url)
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/jpeg"
    assert "beach.jpg" in original.headers["content-disposition"]
    photo = Image.open(io.BytesIO(original.content))
    assert photo.size == (64, 48)
    exif = photo.getexif()
    assert ExifTags.IFD.GPSInfo not in exif and not exif.get_ifd(ExifTags.IFD.GPSInfo)

    # Without naming the message, once the attachment is known (the binder follows the log).
    thumb = await bob.call("get_download_url", media_id=media.media_id, variant="small")
    small = await fetch(thumb.get_download_url.url)
    assert small.status_code == 200 and Image.open(io.BytesIO(small.content)).size[0] <= 320

    # A tampered signature and a non-member are refused.
    assert (await fetch(link.get_download_url.url.replace("sig=", "sig=0"))).status_code == 403
    carol = await dev.connect("carol")
    with pytest.raises(ServerError) as refused:
        await carol.call("get_download_url", media_id=media.media_id)
    assert code(refused) == "ERROR_CODE_PERMISSION_DENIED"

    # Deleting the message makes its media unreachable at once.
    await alice.call("delete_message", conversation_id=cid, message_seq=seq)
    with pytest.raises(ServerError) as gone:
        await bob.call("get_download_url", media_id=media.media_id, message_seq=seq)
    assert code(gone) == "ERROR_CODE_NOT_FOUND"


async def test_bytes_decide_the_type_and_scans_refuse(dev: Dev) -> None:
    alice = await dev.connect("alice")
    cid = await alice.create_group("bob")
    elf = await uploaded(alice, cid, ELF, name="cat.png", content_type="image/png")
    assert (elf.state, elf.reject_reason) == (media_pb.MEDIA_STATE_REJECTED, "type_not_allowed")
    eicar = await uploaded(alice, cid, EICAR, name="notes.txt", content_type="text/plain")
    assert (eicar.state, eicar.reject_reason) == (media_pb.MEDIA_STATE_REJECTED, "infected")
    # A rejected media cannot be attached.
    with pytest.raises(ServerError) as refused:
        await send(alice, cid, "x", [eicar.media_id], "eicar")
    assert code(refused) == "ERROR_CODE_INVALID_ARGUMENT"


async def test_upload_over_its_declared_size_is_refused_by_the_store(dev: Dev) -> None:
    alice = await dev.connect("alice")
    cid = await alice.create_group("bob")
    created = await alice.call(
        "create_upload",
        conversation_id=cid,
        file_name="big.jpg",
        size_bytes=100,
        content_type="image/jpeg",
    )
    reply = await upload_bytes(created.create_upload.upload, b"\xff" * 101)
    assert reply.status_code in (400, 403, 413)
    with pytest.raises(ServerError) as nothing:
        await alice.call("complete_upload", media_id=created.create_upload.media.media_id)
    assert code(nothing) == "ERROR_CODE_FAILED_PRECONDITION"
    with pytest.raises(ServerError) as too_big:
        await alice.call(
            "create_upload",
            conversation_id=cid,
            file_name="huge.bin",
            size_bytes=26 * 1024 * 1024,
            content_type="image/jpeg",
        )
    assert code(too_big) == "ERROR_CODE_INVALID_ARGUMENT" and "size_bytes" in too_big.value.message


async def test_attachments_are_checked_against_sender_and_conversation(dev: Dev) -> None:
    alice, bob = await dev.connect("alice"), await dev.connect("bob")
    first = await alice.create_group("bob")
    second = await alice.create_group("bob", title="other")
    media = await uploaded(alice, first, jpeg_with_gps())
    with pytest.raises(ServerError) as elsewhere:
        await send(alice, second, "wrong room", [media.media_id], "k1")
    assert code(elsewhere) == "ERROR_CODE_INVALID_ARGUMENT"
    with pytest.raises(ServerError) as not_theirs:
        await send(bob, first, "not mine", [media.media_id], "k2")
    assert code(not_theirs) == "ERROR_CODE_PERMISSION_DENIED"
    with pytest.raises(ServerError) as unknown:
        await send(alice, first, "made up", ["https://evil.example/x.png"], "k3")
    assert code(unknown) == "ERROR_CODE_INVALID_ARGUMENT"
    # Nothing of the refused sends was stored.
    history = await bob.call("get_history", conversation_id=first)
    assert not history.get_history.messages
    # Non-members cannot upload into the conversation.
    carol = await dev.connect("carol")
    with pytest.raises(ServerError) as outsider:
        await carol.call(
            "create_upload",
            conversation_id=first,
            file_name="a.jpg",
            size_bytes=10,
            content_type="image/jpeg",
        )
    assert code(outsider) == "ERROR_CODE_PERMISSION_DENIED"


async def test_sweeper_removes_an_upload_never_completed(dev: Dev) -> None:
    alice = await dev.connect("alice")
    cid = await alice.create_group("bob")
    data = jpeg_with_gps()
    created = await alice.call(
        "create_upload",
        conversation_id=cid,
        file_name="left.jpg",
        size_bytes=len(data),
        content_type="image/jpeg",
    )
    assert (await upload_bytes(created.create_upload.upload, data)).status_code < 300
    media = dev.system.media
    assert media is not None and media.store is not None and media.blobs is not None
    media_id = created.create_upload.media.media_id
    assert await media.blobs.stat(f"uploads/{media_id}") is not None
    later = ManualClock(time.time() + 2 * 3600)  # the app crashed before completing
    removed = await MediaSweeper(media.store, media.blobs, later, SweepPolicy()).sweep_once()
    assert removed == 1
    assert await media.blobs.stat(f"uploads/{media_id}") is None
    with pytest.raises(ServerError) as gone:
        await alice.call("complete_upload", media_id=media_id)
    assert code(gone) == "ERROR_CODE_NOT_FOUND"
