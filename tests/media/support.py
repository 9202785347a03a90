"""What the media tests do as an app would: run `chatmesh dev`, connect, upload to the presigned
URL with a real HTTP client, complete, send with attachments."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.media.v1 import media_service_pb2 as media_pb
from PIL import ExifTags, Image

from chatmesh_common.auth import issue_token
from chatmesh_common.clock import SystemClock
from chatmesh_launcher.dev import DevOptions, DevSystem, dev_process
from tests.gateway.client import GatewayClient

SECRET = "media-e2e-user-secret-of-at-least-32-bytes"
SERVICE_SECRET = "media-e2e-service-secret-of-32-bytes-min"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200


def jpeg_with_gps(width: int = 64, height: int = 48) -> bytes:
    image = Image.new("RGB", (width, height), (200, 40, 30))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "chatmesh-test-camera"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.0),
    }
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


@dataclass
class Dev:
    system: DevSystem

    async def connect(self, user: str) -> GatewayClient:
        return await GatewayClient.connect(self.system.gateway.url, issue_token(SECRET, user))


@contextlib.asynccontextmanager
async def start_dev(
    tmp_path: Path, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[Dev]:
    """`chatmesh dev` in this process on free ports, with `extra_env` (e.g. the S3 settings)."""
    env = {
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
        **(extra_env or {}),
    }
    options = DevOptions(
        data_dir=str(tmp_path), grpc="127.0.0.1:0", ws="127.0.0.1:0", metrics="127.0.0.1:0"
    )
    system = dev_process(options, SystemClock(), env).service
    assert isinstance(system, DevSystem)
    await system.start()
    try:
        yield Dev(system)
    finally:
        await system.stop()


async def upload_bytes(upload: media_pb.PresignedUpload, data: bytes) -> httpx.Response:
    """What an app does with a presigned upload (PUT for the fs store, POST form for S3)."""
    async with httpx.AsyncClient() as http:
        if upload.method == "PUT":
            return await http.put(upload.url, content=data, headers=dict(upload.headers))
        return await http.post(upload.url, data=dict(upload.fields), files={"file": data})


async def uploaded(
    client: GatewayClient,
    conversation_id: str,
    data: bytes,
    *,
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
) -> media_pb.Media:
    created = await client.call(
        "create_upload",
        conversation_id=conversation_id,
        file_name=name,
        size_bytes=len(data),
        content_type=content_type,
    )
    reply = await upload_bytes(created.create_upload.upload, data)
    assert reply.status_code in (200, 201, 204), reply.text
    media_id = created.create_upload.media.media_id
    done = await client.call("complete_upload", media_id=media_id)
    return done.complete_upload.media


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url)


async def send(
    client: GatewayClient, cid: str, body: str, attachments: list[str], key: str
) -> gateway_pb2.ServerFrame:
    return await client.call(
        "send_message",
        conversation_id=cid,
        client_msg_id=key,
        body=body,
        kind="MESSAGE_KIND_MEDIA",
        attachments=attachments,
    )
