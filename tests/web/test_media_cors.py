"""`chatmesh dev`'s CORS front of the media URLs (chatmesh_launcher/media_cors.py): preflights
from the web client's origin are allowed, others refused; requests pass through with their
signature checks intact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from chatmesh.media.v1 import media_service_pb2 as media_pb

from chatmesh_launcher.media_cors import MediaCorsRelay
from tests.media.support import Dev, start_dev

PNG_TYPE = "image/png"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def relay_of(dev: Dev) -> MediaCorsRelay:
    relay = dev.system.media_relay
    assert relay is not None
    return relay


async def test_media_urls_point_at_the_relay(dev: Dev) -> None:
    relay = relay_of(dev)
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
    assert upload.url.startswith(f"http://127.0.0.1:{relay.port}/blobs/")
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

        # A tampered signature is still media_service's 403, now with the CORS header.
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


async def test_malformed_requests_get_no_answer_and_do_not_stop_the_relay(dev: Dev) -> None:
    relay = relay_of(dev)
    for request in (
        b"PUT /blobs/x HTTP/1.1\r\nContent-Length: many\r\n\r\n",
        b"GET /blobs/x HTTP/1.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(request)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{relay.port}/blobs/missing")
    assert answer.status_code in (400, 403)


async def test_no_relay_when_media_urls_are_public_or_the_web_client_is_off(
    tmp_path: Path,
) -> None:
    for env in (
        {"CHATMESH_MEDIA_PUBLIC_URL": "http://media.example"},
        {"CHATMESH_WS_WEB_CLIENT": "false"},
    ):
        async with start_dev(tmp_path / next(iter(env)), env) as dev:
            assert dev.system.media_relay is None
