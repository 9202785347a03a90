"""`chatmesh dev`'s CORS front of the media URLs (chatmesh_launcher/media_cors.py): preflights
from the web client's origin are allowed, others refused; requests pass through with their
signature checks intact."""

from __future__ import annotations

from pathlib import Path

import httpx
from chatmesh.media.v1 import media_service_pb2 as media_pb

from chatmesh_launcher.media_cors import MediaCorsRelay
from tests.media.support import Dev, start_dev

PNG_TYPE = "image/png"


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
    await client.close()


async def test_no_relay_when_media_urls_are_public_or_the_web_client_is_off(
    tmp_path: Path,
) -> None:
    for env in (
        {"CHATMESH_MEDIA_PUBLIC_URL": "http://media.example"},
        {"CHATMESH_WS_WEB_CLIENT": "false"},
    ):
        async with start_dev(tmp_path / next(iter(env)), env) as dev:
            assert dev.system.media_relay is None
