"""The contract every blob store keeps, run on the filesystem store (with its HTTP server) and on
S3 (a real SeaweedFS that enforces signatures). Uploads and downloads go through a real HTTP
client, so the store itself is what refuses a bad request."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from media_service.blobs.base import BlobStore, PresignedUpload
from media_service.blobs.keys import InvalidKeyError
from media_service.blobs.s3 import S3BlobStore
from tests.media.conftest import FsBlobs
from tests.servers.seaweedfs import SeaweedServer

pytestmark = pytest.mark.timeout(30)

_BUCKET = "contract"


@dataclass
class Blobs:
    store: BlobStore
    prefix: str  # every key of one test starts with it, so tests share an S3 bucket
    expire: Callable[[], Awaitable[None]]  # after it, URLs presigned with expires_s=1 are stale

    def key(self, name: str) -> str:
        return self.prefix + name


@pytest.fixture
async def fs_contract(fs_blobs: FsBlobs) -> Blobs:
    async def advance() -> None:
        fs_blobs.clock.advance(2)

    return Blobs(fs_blobs.store, f"t{uuid.uuid4().hex[:12]}/", advance)


@pytest.fixture
async def s3_contract(s3_server: SeaweedServer) -> AsyncIterator[Blobs]:
    store = S3BlobStore(s3_server.url, s3_server.region, _BUCKET, *s3_server.credentials)
    await store.open()

    async def sleep() -> None:
        await asyncio.sleep(2.1)  # S3 checks expiry against its own wall clock

    try:
        yield Blobs(store, f"t{uuid.uuid4().hex[:12]}/", sleep)
    finally:
        await store.close()


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def blobs(request: pytest.FixtureRequest) -> Blobs:
    """Each contract test once per store (a sync fixture: it picks one of the async ones)."""
    built: Blobs = request.getfixturevalue(f"{request.param}_contract")
    return built


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def upload(
    http: httpx.AsyncClient, up: PresignedUpload, data: bytes, content_type: str = "image/png"
) -> httpx.Response:
    """What a client does with a PresignedUpload."""
    if up.method == "POST":
        files = {"file": ("upload", data, content_type)}  # httpx sends fields first, file last
        return await http.post(up.url, data=dict(up.fields), files=files)
    assert up.method == "PUT"
    return await http.put(up.url, content=data, headers=dict(up.headers))


def tamper_url(url: str) -> str:
    """The same URL with the last hex digit of its signature changed."""
    match = re.search(r"(?:sig|X-Amz-Signature)=[0-9a-f]+", url)
    assert match, url
    end = match.end() - 1
    return url[:end] + ("0" if url[end] != "0" else "1") + url[end + 1 :]


def tamper(up: PresignedUpload) -> PresignedUpload:
    if "x-amz-signature" in up.fields:
        fields = dict(up.fields)
        fields["x-amz-signature"] = fields["x-amz-signature"][:-1] + (
            "0" if fields["x-amz-signature"][-1] != "0" else "1"
        )
        return PresignedUpload(up.method, up.url, up.expires_at_ms, fields, up.headers)
    return PresignedUpload(up.method, tamper_url(up.url), up.expires_at_ms, up.fields, up.headers)


async def test_presigned_upload_stores_the_bytes(blobs: Blobs, http: httpx.AsyncClient) -> None:
    """A client uploads with the presigned request; stat and read see the object."""
    key = blobs.key("photo")
    up = await blobs.store.presign_upload(
        key, max_size=1000, content_type="image/png", expires_s=60
    )
    assert up.method in ("POST", "PUT")
    response = await upload(http, up, b"\x89PNG-bytes")
    assert response.is_success, response.text
    info = await blobs.store.stat(key)
    assert info is not None and info.size == 10
    assert await blobs.store.read(key, limit=4) == b"\x89PNG"
    assert await blobs.store.read(key, limit=100) == b"\x89PNG-bytes"


async def test_upload_of_exactly_max_size_is_accepted(
    blobs: Blobs, http: httpx.AsyncClient
) -> None:
    """max_size is inclusive."""
    key = blobs.key("exact")
    up = await blobs.store.presign_upload(key, max_size=8, content_type="image/png", expires_s=60)
    assert (await upload(http, up, b"12345678")).is_success
    assert await blobs.store.stat(key) is not None


async def test_upload_over_max_size_is_refused(blobs: Blobs, http: httpx.AsyncClient) -> None:
    """The store refuses a body one byte over the signed limit and keeps nothing."""
    key = blobs.key("big")
    up = await blobs.store.presign_upload(key, max_size=8, content_type="image/png", expires_s=60)
    response = await upload(http, up, b"123456789")
    assert response.status_code in (400, 403, 413), response.text
    assert await blobs.store.stat(key) is None


async def test_upload_with_another_content_type_is_refused(
    blobs: Blobs, http: httpx.AsyncClient
) -> None:
    """The Content-Type is part of what is signed."""
    key = blobs.key("typed")
    up = await blobs.store.presign_upload(key, max_size=99, content_type="image/png", expires_s=60)
    if up.method == "POST":
        fields = {**up.fields, "Content-Type": "text/html"}
        response = await http.post(
            up.url, data=fields, files={"file": ("upload", b"<html>", "text/html")}
        )
    else:
        headers = {**up.headers, "Content-Type": "text/html"}
        response = await http.put(up.url, content=b"<html>", headers=headers)
    assert response.status_code == 403, response.text
    assert await blobs.store.stat(key) is None


async def test_tampered_upload_signature_is_refused(blobs: Blobs, http: httpx.AsyncClient) -> None:
    """One changed hex digit of the signature: 403, nothing stored."""
    key = blobs.key("tampered")
    up = await blobs.store.presign_upload(key, max_size=99, content_type="image/png", expires_s=60)
    response = await upload(http, tamper(up), b"data")
    assert response.status_code == 403, response.text
    assert await blobs.store.stat(key) is None


async def test_expired_upload_is_refused(blobs: Blobs, http: httpx.AsyncClient) -> None:
    """An upload URL is refused once its expiry has passed."""
    key = blobs.key("late")
    up = await blobs.store.presign_upload(key, max_size=99, content_type="image/png", expires_s=1)
    await blobs.expire()
    response = await upload(http, up, b"data")
    assert response.status_code == 403, response.text
    assert await blobs.store.stat(key) is None


async def test_presigned_download_serves_bytes_as_the_given_type_and_file_name(
    blobs: Blobs, http: httpx.AsyncClient
) -> None:
    """GET returns the bytes with the presigned Content-Type and an RFC 6266 file name."""
    key = blobs.key("doc")
    await blobs.store.write(key, b"%PDF-1.7 body", content_type="application/octet-stream")
    url = await blobs.store.presign_download(
        key, expires_s=60, content_type="application/pdf", file_name="résumé final.pdf"
    )
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"%PDF-1.7 body"
    assert response.headers["content-type"] == "application/pdf"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=UTF-8''{quote('résumé final.pdf', safe='')}" in disposition


async def test_tampered_download_signature_is_refused(
    blobs: Blobs, http: httpx.AsyncClient
) -> None:
    key = blobs.key("secret")
    await blobs.store.write(key, b"data", content_type="text/plain")
    url = await blobs.store.presign_download(
        key, expires_s=60, content_type="text/plain", file_name="a.txt"
    )
    assert (await http.get(tamper_url(url))).status_code == 403


async def test_download_with_another_file_name_is_refused(
    blobs: Blobs, http: httpx.AsyncClient
) -> None:
    """The file name and type are signed: a client cannot make the store serve another."""
    key = blobs.key("named")
    await blobs.store.write(key, b"data", content_type="text/plain")
    url = await blobs.store.presign_download(
        key, expires_s=60, content_type="text/plain", file_name="a.txt"
    )
    assert "a.txt" in url
    assert (await http.get(url.replace("a.txt", "b.txt"))).status_code == 403


async def test_expired_download_is_refused(blobs: Blobs, http: httpx.AsyncClient) -> None:
    key = blobs.key("old")
    await blobs.store.write(key, b"data", content_type="text/plain")
    url = await blobs.store.presign_download(
        key, expires_s=1, content_type="text/plain", file_name="a.txt"
    )
    await blobs.expire()
    assert (await http.get(url)).status_code == 403


async def test_missing_key(blobs: Blobs, http: httpx.AsyncClient) -> None:
    """No object: stat is None, read raises KeyError, a signed download is 404."""
    key = blobs.key("nothing/here")
    assert await blobs.store.stat(key) is None
    with pytest.raises(KeyError):
        await blobs.store.read(key, limit=10)
    url = await blobs.store.presign_download(
        key, expires_s=60, content_type="text/plain", file_name="a.txt"
    )
    assert (await http.get(url)).status_code == 404


async def test_write_read_and_overwrite(blobs: Blobs) -> None:
    key = blobs.key("thumb")
    await blobs.store.write(key, b"first", content_type="image/webp")
    await blobs.store.write(key, b"second version", content_type="image/webp")
    assert await blobs.store.read(key, limit=1000) == b"second version"
    info = await blobs.store.stat(key)
    assert info is not None and info.size == 14


async def test_list_keys_sorted_by_prefix_with_limit(blobs: Blobs) -> None:
    for name in ("b/2", "a/1", "b/1", "b/10", "bb", "a"):
        await blobs.store.write(blobs.key(name), b"x", content_type="text/plain")
    p = blobs.prefix
    assert await blobs.store.list_keys(p + "b/") == [p + "b/1", p + "b/10", p + "b/2"]
    assert await blobs.store.list_keys(p + "b") == [p + "b/1", p + "b/10", p + "b/2", p + "bb"]
    assert await blobs.store.list_keys(p, limit=3) == [p + "a", p + "a/1", p + "b/1"]
    assert await blobs.store.list_keys(p + "zz") == []


async def test_delete_removes_keys_and_ignores_missing_ones(blobs: Blobs) -> None:
    keys = [blobs.key(f"d/{i}") for i in range(3)]
    for key in keys:
        await blobs.store.write(key, b"x", content_type="text/plain")
    await blobs.store.delete([keys[0], keys[2], blobs.key("never-written")])
    assert await blobs.store.list_keys(blobs.prefix) == [keys[1]]
    assert await blobs.store.stat(keys[0]) is None
    await blobs.store.delete([])


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "sp ace", "a//b"])
async def test_invalid_keys_are_refused_before_any_io(blobs: Blobs, bad: str) -> None:
    """Keys are checked alike by every store: InvalidKeyError, a ValueError."""
    with pytest.raises(InvalidKeyError):
        await blobs.store.stat(bad)
    with pytest.raises(InvalidKeyError):
        await blobs.store.write(bad, b"x", content_type="text/plain")
    with pytest.raises(InvalidKeyError):
        await blobs.store.presign_upload(bad, max_size=9, content_type="a/b", expires_s=9)
