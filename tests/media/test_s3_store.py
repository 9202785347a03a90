"""S3BlobStore beyond the contract: an unreachable S3 is reported quickly as
BlobUnavailableError, and the test SeaweedFS really enforces signatures."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from botocore.exceptions import ClientError

from media_service.blobs.base import BlobUnavailableError
from media_service.blobs.s3 import S3BlobStore
from tests.servers.ports import free_port
from tests.servers.seaweedfs import SeaweedServer

pytestmark = pytest.mark.timeout(30)


def down_store() -> S3BlobStore:
    # A port that was free a moment ago: nothing listens, connections are refused.
    return S3BlobStore(f"http://127.0.0.1:{free_port()}", "us-east-1", "b1", "id", "secret")


async def test_open_against_a_down_s3_raises_unavailable_quickly() -> None:
    store = down_store()
    started = time.monotonic()
    with pytest.raises(BlobUnavailableError):
        await store.open()
    assert time.monotonic() - started < 5


async def test_every_call_against_a_down_s3_raises_unavailable() -> None:
    store = down_store()
    with pytest.raises(BlobUnavailableError):
        await store.open()
    started = time.monotonic()
    with pytest.raises(BlobUnavailableError):
        await store.stat("k")
    with pytest.raises(BlobUnavailableError):
        await store.read("k", limit=1)
    with pytest.raises(BlobUnavailableError):
        await store.write("k", b"x", content_type="text/plain")
    with pytest.raises(BlobUnavailableError):
        await store.delete(["k"])
    with pytest.raises(BlobUnavailableError):
        await store.list_keys("")
    assert time.monotonic() - started < 10
    await store.close()


async def test_unresponsive_s3_times_out_as_unavailable() -> None:
    """A server that accepts connections and never answers: the read timeout fires."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = S3BlobStore(
        f"http://127.0.0.1:{port}", "us-east-1", "b1", "id", "secret", read_timeout=0.5
    )
    started = time.monotonic()
    try:
        with pytest.raises(BlobUnavailableError):
            await store.open()
    finally:
        server.close()
        await store.close()
    assert time.monotonic() - started < 5


@pytest.mark.s3
async def test_seaweedfs_refuses_anonymous_and_wrongly_signed_requests(
    s3_server: SeaweedServer,
) -> None:
    """The test S3 enforces signatures, so the contract's refusals prove something."""
    store = S3BlobStore(s3_server.url, s3_server.region, "anon-check", *s3_server.credentials)
    await store.open()
    await store.write("k", b"secret bytes", content_type="text/plain")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{s3_server.url}/anon-check/k")).status_code == 403
        put = await http.put(f"{s3_server.url}/anon-check/k2", content=b"x")
        assert put.status_code == 403
    await store.close()

    wrong = S3BlobStore(s3_server.url, s3_server.region, "anon-check", s3_server.access_key, "no")
    with pytest.raises(ClientError) as caught:
        await wrong.open()  # a refusal, not an outage
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    await wrong.close()


@pytest.mark.s3
async def test_open_creates_the_bucket_once(s3_server: SeaweedServer) -> None:
    for _ in range(2):
        store = S3BlobStore(s3_server.url, s3_server.region, "fresh-bucket", *s3_server.credentials)
        await store.open()
        assert await store.list_keys("") == []
        await store.close()


@pytest.mark.s3
async def test_delete_more_than_one_batch(s3_server: SeaweedServer) -> None:
    """DeleteObjects takes 1000 keys at most: more are sent in batches."""
    store = S3BlobStore(s3_server.url, s3_server.region, "batches", *s3_server.credentials)
    await store.open()
    await store.write("keep", b"x", content_type="text/plain")
    await store.delete([f"none/{i}" for i in range(1001)] + ["keep"])
    assert await store.list_keys("") == []
    await store.close()
