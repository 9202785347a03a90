"""FsBlobHttpServer on a free port: HTTP details beyond the contract, and robustness against
clients that send garbage, lie about sizes or go away mid-upload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from chatmesh_common.clock import ManualClock
from media_service.blobs.base import PresignedUpload
from media_service.blobs.fs import FsBlobStore
from media_service.blobs.keys import InvalidKeyError, validate_key
from tests.media.conftest import FsBlobs

pytestmark = pytest.mark.timeout(20)


async def presign(fs: FsBlobs, key: str = "up/1", max_size: int = 100) -> PresignedUpload:
    return await fs.store.presign_upload(
        key, max_size=max_size, content_type="image/png", expires_s=60
    )


def target(url: str) -> str:
    split = urlsplit(url)
    return f"{split.path}?{split.query}"


async def raw(fs: FsBlobs, data: bytes) -> bytes:
    """Send `data` and EOF on a fresh connection; return everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fs.server.port)
    try:
        writer.write(data)
        writer.write_eof()
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def assert_serving(fs: FsBlobs) -> None:
    await fs.store.write("alive", b"yes", content_type="text/plain")
    url = await fs.store.presign_download(
        "alive", expires_s=60, content_type="text/plain", file_name="a"
    )
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"yes"


def temp_files(fs: FsBlobs) -> list[str]:
    return [p.name for p in (fs.root / "tmp").iterdir()]


async def test_garbage_bytes_get_400_and_the_server_keeps_serving(fs_blobs: FsBlobs) -> None:
    """A request h11 cannot parse is answered 400 and closed; the next client is served."""
    response = await raw(fs_blobs, b"\x00\xff garbage \r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")
    await assert_serving(fs_blobs)


async def test_client_closing_before_a_request_line_is_harmless(fs_blobs: FsBlobs) -> None:
    response = await raw(fs_blobs, b"GET /blobs/x HT")
    assert response == b"" or response.startswith(b"HTTP/1.1 400")
    await assert_serving(fs_blobs)


async def test_disconnect_mid_upload_leaves_no_object(fs_blobs: FsBlobs) -> None:
    """Half a body, then the client goes away: no object, no temp file left behind."""
    up = await presign(fs_blobs)
    _reader, writer = await asyncio.open_connection("127.0.0.1", fs_blobs.server.port)
    writer.write(
        f"PUT {target(up.url)} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        "Content-Length: 100\r\n\r\n".encode()
        + b"x" * 40
    )
    await writer.drain()
    for _ in range(100):  # until the server has the upload's temp file open
        if temp_files(fs_blobs):
            break
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if not temp_files(fs_blobs):
            break
        await asyncio.sleep(0.01)
    assert temp_files(fs_blobs) == []
    assert await fs_blobs.store.stat("up/1") is None
    await assert_serving(fs_blobs)


async def test_missing_content_length_is_411(fs_blobs: FsBlobs) -> None:
    """A chunked upload has no size to check up front: refused."""
    up = await presign(fs_blobs)

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    async with httpx.AsyncClient() as http:
        response = await http.put(up.url, content=body(), headers=dict(up.headers))
    assert response.status_code == 411
    assert await fs_blobs.store.stat("up/1") is None


async def test_content_length_over_max_is_413_before_the_body(fs_blobs: FsBlobs) -> None:
    """The refusal comes from the headers alone: the client need not send the body."""
    up = await presign(fs_blobs, max_size=10)
    response = await raw(
        fs_blobs,
        f"PUT {target(up.url)} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        "Content-Length: 11\r\n\r\n".encode(),
    )
    assert response.startswith(b"HTTP/1.1 413")
    assert b"limit of 10" in response


async def test_head_has_the_headers_and_no_body(fs_blobs: FsBlobs) -> None:
    await fs_blobs.store.write("doc", b"12345", content_type="text/plain")
    url = await fs_blobs.store.presign_download(
        "doc", expires_s=60, content_type="text/csv", file_name='q"1".csv'
    )
    async with httpx.AsyncClient() as http:
        response = await http.head(url)
    assert response.status_code == 200
    assert response.headers["content-length"] == "5"
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"q_1_.csv\"; filename*=UTF-8''q%221%22.csv"
    )
    assert response.content == b""


async def test_requests_on_one_kept_alive_connection(fs_blobs: FsBlobs) -> None:
    """Upload, refused request, download: all over the same connection."""
    up = await presign(fs_blobs)
    url = await fs_blobs.store.presign_download(
        "up/1", expires_s=60, content_type="image/png", file_name="a.png"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", fs_blobs.server.port)
    try:
        for request, status in [
            (f"PUT {target(up.url)} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
             "Content-Length: 3\r\n\r\nabc", b"201"),
            ("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
            (f"GET {target(url)} HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        ]:  # fmt: skip
            writer.write(request.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 " + status), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        assert body == b"abc"
    finally:
        writer.close()


async def test_other_methods_and_paths_are_refused(fs_blobs: FsBlobs) -> None:
    base = f"http://127.0.0.1:{fs_blobs.server.port}"
    async with httpx.AsyncClient() as http:
        assert (await http.delete(f"{base}/blobs/a")).status_code == 405
        assert (await http.get(f"{base}/other")).status_code == 404
        assert (await http.get(f"{base}/blobs/a")).status_code == 403  # unsigned
    # httpx would normalise the dots away.
    response = await raw(fs_blobs, b"GET /blobs/a/../b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")


async def test_large_upload_is_streamed_to_disk(fs_blobs: FsBlobs) -> None:
    """A multi-chunk body arrives whole."""
    size = 3 * 1024 * 1024 + 7
    up = await presign(fs_blobs, max_size=size)
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with httpx.AsyncClient() as http:
        response = await http.put(up.url, content=data, headers=dict(up.headers))
    assert response.status_code == 201
    assert await fs_blobs.store.read("up/1", limit=size + 1) == data


async def test_stop_closes_idle_keep_alive_connections(fs_blobs: FsBlobs) -> None:
    """stop() returns promptly although a client keeps its connection open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fs_blobs.server.port)
    writer.write(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 404")
    await asyncio.wait_for(fs_blobs.server.stop(grace=10), 2)
    writer.close()


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "a/../b", "..", "./a", "a b", "a%2Fb"])
def test_invalid_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


async def test_a_key_and_a_key_under_it_can_both_exist(fs_blobs: FsBlobs) -> None:
    """As on S3, "a" and "a/b" are independent objects."""
    await fs_blobs.store.write("a", b"1", content_type="text/plain")
    await fs_blobs.store.write("a/b", b"2", content_type="text/plain")
    assert await fs_blobs.store.list_keys("a") == ["a", "a/b"]
    await fs_blobs.store.delete(["a/b"])
    assert await fs_blobs.store.read("a", limit=9) == b"1"


async def test_list_keys_with_a_prefix_outside_the_root_is_empty(fs_blobs: FsBlobs) -> None:
    assert await fs_blobs.store.list_keys("../../etc/") == []


def test_store_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        FsBlobStore("/nonexistent", b"", "http://x", ManualClock())


async def test_filesystem_error_is_a_500_and_the_server_keeps_serving(fs_blobs: FsBlobs) -> None:
    """An upload that cannot be written (here: its temp dir is gone) is answered 500."""
    up = await presign(fs_blobs)
    (fs_blobs.root / "tmp").rmdir()
    async with httpx.AsyncClient() as http:
        response = await http.put(up.url, content=b"abc", headers=dict(up.headers))
    assert response.status_code == 500
    (fs_blobs.root / "tmp").mkdir()
    await assert_serving(fs_blobs)
