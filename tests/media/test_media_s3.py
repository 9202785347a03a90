"""Media on real S3 (SeaweedFS): the same app flow as on the embedded store, with S3's POST
policy uploads; S3 down during CompleteUpload is UNAVAILABLE and a retry after it is back
succeeds; nothing is lost."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.media.v1 import media_service_pb2 as media_pb
from PIL import ExifTags, Image

from tests.gateway.client import ServerError
from tests.media.support import Dev, fetch, jpeg_with_gps, send, start_dev, upload_bytes
from tests.servers.seaweedfs import SeaweedServer

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]


@pytest.fixture
async def dev(tmp_path: Path, s3_server: SeaweedServer) -> AsyncIterator[Dev]:
    access_key, secret_key = s3_server.credentials
    env = {
        "CHATMESH_MEDIA_BLOBS": "s3",
        "CHATMESH_S3_ENDPOINT": s3_server.url,
        "CHATMESH_S3_BUCKET": "media-" + secrets.token_hex(4),
        "CHATMESH_S3_ACCESS_KEY": access_key,
        "CHATMESH_S3_SECRET_KEY": secret_key,
    }
    async with start_dev(tmp_path, env) as system:
        yield system


async def test_photo_through_s3_and_s3_down_during_complete(
    dev: Dev, s3_server: SeaweedServer
) -> None:
    alice, bob = await dev.connect("alice"), await dev.connect("bob")
    cid = await alice.create_group("bob")
    data = jpeg_with_gps()
    created = await alice.call(
        "create_upload",
        conversation_id=cid,
        file_name="s3.jpg",
        size_bytes=len(data),
        content_type="image/jpeg",
    )
    upload = created.create_upload.upload
    assert upload.method == "POST"
    assert (await upload_bytes(upload, data)).status_code in (200, 201, 204)
    media_id = created.create_upload.media.media_id

    await asyncio.to_thread(s3_server.stop)
    try:
        with pytest.raises(ServerError) as down:
            await alice.call("complete_upload", media_id=media_id, timeout_s=30)
        assert gateway_pb2.ErrorCode.Name(down.value.code) == "ERROR_CODE_UNAVAILABLE"
    finally:
        await asyncio.to_thread(s3_server.start)

    done = await alice.call("complete_upload", media_id=media_id, timeout_s=30)
    media = done.complete_upload.media
    assert media.state == media_pb.MEDIA_STATE_READY, media.reject_detail
    sent = await send(alice, cid, "from s3", [media_id], "s3-1")
    link = await bob.call(
        "get_download_url", media_id=media_id, message_seq=sent.send_message.message.seq
    )
    original = await fetch(link.get_download_url.url)
    assert original.status_code == 200
    exif = Image.open(io.BytesIO(original.content)).getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
