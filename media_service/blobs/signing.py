"""HMAC signatures of the filesystem store's presigned URLs, and the Content-Disposition a
download URL pins.

A signature covers the method, the key and every query parameter that limits the request, each
part length-prefixed so that no two different requests sign the same bytes (a file name may
contain any character, including the separator a plain join would use).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def signature(secret: bytes, *parts: str) -> str:
    """Hex HMAC-SHA256 over `parts` in order."""
    message = b"".join(
        b"%d:%s;" % (len(encoded), encoded) for encoded in (p.encode() for p in parts)
    )
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, sig: str, *parts: str) -> bool:
    """True when `sig` is the signature of `parts`, compared in constant time."""
    return hmac.compare_digest(signature(secret, *parts).encode(), sig.encode())


def attachment_disposition(file_name: str) -> str:
    """`attachment` with `file_name`, as RFC 6266 asks: an ASCII fallback `filename` for old
    clients (anything outside printable ASCII, quotes and backslashes become `_`) and the exact
    name as RFC 5987 `filename*=UTF-8''...`."""
    fallback = (
        "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in file_name) or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
