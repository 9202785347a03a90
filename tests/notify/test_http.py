"""The HTTP clients providers post with (notify_service/providers/http.py): both answer alike
for what a provider classifies, against a raw local server that writes exactly the bytes given."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from notify_service.providers.base import Outcome, PushResult
from notify_service.providers.http import H1Client, H2Client, HttpClient, Reply
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(20)

CLIENTS: dict[str, Callable[[], HttpClient]] = {"h1": H1Client, "h2": H2Client}


@pytest.fixture(params=sorted(CLIENTS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[HttpClient]:
    made = CLIENTS[request.param]()
    yield made
    await made.close()


@contextlib.asynccontextmanager
async def raw_server(answer: bytes, close: bool = False) -> AsyncIterator[str]:
    """Reads one request head and body per turn, writes `answer` (then closes with `close`);
    yields its origin."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_reply_has_status_lowercased_headers_and_body(client: HttpClient) -> None:
    answer = b"HTTP/1.1 503 Busy\r\nRetry-After: 12\r\nContent-Length: 2\r\n\r\n{}"
    async with raw_server(answer) as origin:
        first = await client.post(f"{origin}/a", b"x", {"content-type": "text/plain"}, 2.0)
        # The connection is kept and used again.
        second = await client.post(f"{origin}/b", b"", {}, 2.0)
    for reply in (first, second):
        assert isinstance(reply, Reply)
        assert (reply.status, reply.headers["retry-after"], reply.body) == (503, "12", b"{}")
        assert reply.json_object() == {}


async def test_a_chunked_body_is_read_whole(client: HttpClient) -> None:
    answer = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"rea\r\n10\r\nson":"BadToken"}\r\n0\r\n\r\n'
    )
    async with raw_server(answer) as origin:
        reply = await client.post(f"{origin}/a", b"{}", {}, 2.0)
    assert isinstance(reply, Reply)
    assert reply.json_object() == {"reason": "BadToken"}


@pytest.mark.parametrize("url", ["http://a\x00b/x", "http://:80/x", "/relative", "ftp://a/x"])
async def test_an_unusable_url_is_failed(client: HttpClient, url: str) -> None:
    """A URL that cannot be requested is FAILED "InvalidURL": retrying cannot fix it."""
    assert await client.post(url, b"", {}, 1.0) == PushResult(Outcome.FAILED, reason="InvalidURL")


async def test_no_listener_is_unreachable(client: HttpClient) -> None:
    reply = await client.post(f"http://127.0.0.1:{free_port()}/x", b"", {}, 2.0)
    assert reply == PushResult(Outcome.RETRY, reason="unreachable")


async def test_no_answer_in_time_is_timeout(client: HttpClient) -> None:
    async with raw_server(b"") as origin:
        reply = await client.post(f"{origin}/x", b"", {}, 0.2)
    assert reply == PushResult(Outcome.RETRY, reason="timeout")


@pytest.mark.parametrize(
    "answer",
    [
        # Closed before any answer, and in the middle of a body.
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        # A body that does not decode as the encoding it names.
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip",
    ],
)
async def test_an_answer_that_cannot_be_read_is_retry(client: HttpClient, answer: bytes) -> None:
    """Never an exception: RETRY, "connection lost" or "http error: <kind>"."""
    async with raw_server(answer, close=True) as origin:
        reply = await client.post(f"{origin}/x", b"", {}, 2.0)
    assert isinstance(reply, PushResult) and reply.outcome is Outcome.RETRY
    assert reply.reason == "connection lost" or reply.reason.startswith("http error: ")
