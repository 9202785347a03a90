"""What every push provider does the same way around its own API: the retry answer for a busy
provider (with its Retry-After), compact JSON bodies and P-256 signing keys. The bounded POST
whose failures are classified into a PushResult is the HTTP client's (providers/http.py).
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .base import Outcome, PushResult
from .http import Reply
from .retry_after import parse_retry_after


def is_transient(status: int) -> bool:
    """429 and 5xx: the provider is busy or failing, which retrying later can fix."""
    return status == 429 or status >= 500


def retry_later(reply: Reply, reason: str, now: float) -> PushResult:
    """RETRY for `reply`, after its Retry-After (counted from `now`) when it has one."""
    retry_after = parse_retry_after(reply.headers.get("retry-after"), now)
    return PushResult(Outcome.RETRY, reply.status, reason, retry_after)


def compact_json(value: object) -> bytes:
    """UTF-8 JSON without spaces or escaped non-ASCII: push payload limits count bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
