"""CORS of the fs blob store's URLs (media_service/blobs/fs_http.py), which `chatmesh dev` opens
to its web client's origin: preflights from it are allowed, others refused; uploads keep their
signature checks and carry the CORS header only for an allowed origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from chatmesh.media.v1 import media_service_pb2 as media_pb

from tests.media.support import Dev

PNG_TYPE = "image/png"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_web_clients_origin_may_upload_others_may_not(dev: Dev) -> None:
    client = await dev.connect("alice")
    cid = await client.create_group("bob")
    created = await client.call(
        "create_upload",
        conversation_id=cid,
        file_name="a.png",
        size_bytes=10,
        content_type=PNG_TYPE,
    )
    upload: media_pb.PresignedUpload = created.create_upload.upload
    origin = f"http://127.0.0.1:{dev.system.gateway.port}"
    async with httpx.AsyncClient() as http:
        preflight = await http.options(
            upload.url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "PUT" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "content-type"

        elsewhere = await http.options(
            upload.url,
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"},
        )
        assert elsewhere.status_code == 403
        assert "access-control-allow-origin" not in elsewhere.headers

        # A tampered signature is still refused, with the CORS header so the page can read why.
        tampered = await http.put(
            upload.url.replace("sig=", "sig=0"),
            content=b"0123456789",
            headers={**dict(upload.headers), "Origin": origin},
        )
        assert tampered.status_code == 403
        assert tampered.headers["access-control-allow-origin"] == origin

        stored = await http.put(
            upload.url, content=b"0123456789", headers={**dict(upload.headers), "Origin": origin}
        )
        assert stored.status_code == 201, stored.text
        assert stored.headers["access-control-allow-origin"] == origin
        other = await http.put(
            upload.url,
            content=b"0123456789",
            headers={**dict(upload.headers), "Origin": "http://evil.example"},
        )
        assert "access-control-allow-origin" not in other.headers
        chunked = await http.put(
            upload.url,
            content=chunks(b"01234", b"56789"),
            headers={**dict(upload.headers), "Origin": origin},
        )
        assert chunked.status_code == 411
    await client.close()
