"""The HTTP clients providers post with: one small Protocol, two implementations.

- `H1Client` (aiohttp): HTTP/1.1 with keep-alive connections per origin. For providers that
  accept HTTP/1.1 (webhooks, where every receiver does). Its cost per request is a small
  fraction of httpx's: httpcore's pool scans every connection and every waiting request on
  each request, so at 16 calls in flight a webhook push cost about 1.8 ms of CPU in the client
  alone, against about 0.09 ms here (docs/benchmarks.md, push). tests/notify/test_http.py
  holds both clients to the same answers.
- `H2Client` (httpx with h2): HTTP/2, one multiplexed connection per origin. APNs speaks
  HTTP/2 only; FCM and Web Push services prefer it.

Both bound an attempt as a whole by `timeout_s` and never raise for a failed request: they
return the Reply, or the PushResult for getting none, in one vocabulary of reasons, so that
metrics and dead letters read alike whichever client a provider uses: "timeout" (no answer in
time), "unreachable" (no connection), "connection lost" (the connection failed mid-request),
"InvalidURL" (a target URL that cannot be requested, FAILED: retrying cannot fix it), and
"http error: <kind>" (an answer that could not be read).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from yarl import URL

from .base import Outcome, PushResult


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    # Lower-cased names.
    headers: Mapping[str, str]
    body: bytes

    def json_object(self) -> dict[str, Any]:
        """The JSON object body; {} when it is not JSON or not an object."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class HttpClient(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Reply | PushResult: ...

    async def close(self) -> None: ...


def tls_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """A client's `verify` from a provider's: a CA bundle path becomes a context trusting it."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


_TIMEOUT = PushResult(Outcome.RETRY, reason="timeout")
_UNREACHABLE = PushResult(Outcome.RETRY, reason="unreachable")
_LOST = PushResult(Outcome.RETRY, reason="connection lost")
_INVALID_URL = PushResult(Outcome.FAILED, reason="InvalidURL")


def _unreadable(error: Exception) -> PushResult:
    return PushResult(Outcome.RETRY, reason=f"http error: {type(error).__name__}")


@functools.lru_cache(maxsize=8192)
def _parsed(url: str) -> URL | None:
    """The URL, if it is an absolute http(s) URL with a host and no control character or
    space (aiohttp would try to resolve a host like "a\\x00b" and fail only at DNS, as
    unreachable); None otherwise. Cached: a target's URL is used on every push to it."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parsed = URL(url)
    except ValueError:
        return None
    return parsed if parsed.scheme in ("http", "https") and parsed.host else None


class H1Client:
    """HTTP/1.1 over aiohttp; redirects are never followed. The session is made on the first
    request, inside the event loop, as aiohttp requires."""

    def __init__(self, *, verify: ssl.SSLContext | str | bool = True) -> None:
        self._ssl = tls_verify(verify)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # The delivery loop bounds the calls in flight; the connector need not.
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl)
            # No cookie jar: one receiver's cookies must never go to another, and skipping
            # the jar is a fifth of the cost of a request.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Reply | PushResult:
        try:
            parsed = _parsed(url)
            if parsed is None:
                return _INVALID_URL
            async with asyncio.timeout(timeout_s):
                async with self._open().post(
                    parsed, data=body, headers=dict(headers), allow_redirects=False
                ) as response:
                    content = await response.read()
                    names = {k.lower(): v for k, v in response.headers.items()}
                    return Reply(response.status, names, content)
        except TimeoutError:
            return _TIMEOUT
        except (aiohttp.InvalidURL, ValueError):  # no scheme, no host, a bad character
            return _INVALID_URL
        except aiohttp.ClientConnectorError:
            return _UNREACHABLE
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as e:
            return _unreadable(e)
        except (aiohttp.ClientError, OSError):
            return _LOST

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class H2Client:
    """HTTP/2 over httpx (HTTP/1.1 too unless `http1` is False). `client`: an httpx client to
    use instead (it stays the caller's to close)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        http1: bool = True,
        base_url: str = "",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            base_url=base_url,
            http1=http1,
            http2=True,
            verify=tls_verify(verify),
            follow_redirects=False,
        )

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Reply | PushResult:
        # httpx's own read timeout restarts whenever bytes arrive, and on a shared HTTP/2
        # connection other streams' bytes keep it from ever firing: the whole attempt is
        # bounded instead.
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._client.post(
                    url, content=body, headers=headers, timeout=timeout_s
                )
        except (TimeoutError, httpx.TimeoutException):
            return _TIMEOUT
        except httpx.ConnectError:
            return _UNREACHABLE
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            return _INVALID_URL
        except httpx.TransportError:
            return _LOST
        except httpx.HTTPError as e:  # DecodingError, ...
            return _unreadable(e)
        names = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status_code, names, response.content)

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
