"""What every push provider does the same way around its own API: one bounded POST whose
failures are classified into a PushResult, the retry answer for a busy provider (with its
Retry-After), compact JSON bodies, TLS trust settings and P-256 signing keys.

One vocabulary of reasons for every provider, so that metrics and dead letters read alike:
"timeout" (no answer in time), "unreachable" (no connection), "connection lost" (the
connection failed mid-request), "InvalidURL" (a target URL that cannot be requested).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .base import Outcome, PushResult
from .retry_after import parse_retry_after


async def post(
    client: httpx.AsyncClient, url: str, *, timeout_s: float, **kwargs: Any
) -> httpx.Response | PushResult:
    """`client.post(url, **kwargs)` bounded as a whole by `timeout_s`: the response, or the
    PushResult for getting none (RETRY, or FAILED "InvalidURL"). Never raises for a failed
    request.

    httpx's own read timeout restarts whenever bytes arrive, and on a shared HTTP/2 connection
    other streams' bytes keep it from ever firing: the whole attempt is bounded instead.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await client.post(url, **kwargs)
    except (TimeoutError, httpx.TimeoutException):
        return PushResult(Outcome.RETRY, reason="timeout")
    except httpx.ConnectError:
        return PushResult(Outcome.RETRY, reason="unreachable")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):  # no scheme, no host, a bad character
        return PushResult(Outcome.FAILED, reason="InvalidURL")
    except httpx.TransportError:
        return PushResult(Outcome.RETRY, reason="connection lost")
    except httpx.HTTPError as e:  # an answer that could not be read (DecodingError, ...)
        return PushResult(Outcome.RETRY, reason=f"http error: {type(e).__name__}")


def is_transient(status: int) -> bool:
    """429 and 5xx: the provider is busy or failing, which retrying later can fix."""
    return status == 429 or status >= 500


def retry_later(response: httpx.Response, reason: str, now: float) -> PushResult:
    """RETRY for `response`, after its Retry-After (counted from `now`) when it has one."""
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    return PushResult(Outcome.RETRY, response.status_code, reason, retry_after)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object body; {} when it is not JSON or not an object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def compact_json(value: object) -> bytes:
    """UTF-8 JSON without spaces or escaped non-ASCII: push payload limits count bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def tls_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """httpx's `verify` from a provider's: a CA bundle path becomes a context trusting it."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def load_p256_private_key(pem: str | bytes, what: str) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key in `pem`; a ValueError starting with `what` says what is wrong
    (not an unencrypted PEM private key, or not on P-256)."""
    try:
        key = load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{what}: must be an EC key on P-256 (prime256v1)")
    return key
