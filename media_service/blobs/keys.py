"""Object keys every blob store accepts: ASCII paths `[A-Za-z0-9/_.-]` of non-empty segments,
none of them `.` or `..`, so a key is safe as a file path below a root and as a URL path."""

from __future__ import annotations

import re

_KEY_RE = re.compile(r"[A-Za-z0-9/_.-]+")
_MAX_KEY_LEN = 1024


class InvalidKeyError(ValueError):
    pass


def validate_key(key: str) -> str:
    """`key` itself when it is a usable object key, else InvalidKeyError naming the rule."""
    if not key or len(key) > _MAX_KEY_LEN:
        raise InvalidKeyError(f"key must have 1 to {_MAX_KEY_LEN} characters")
    if not _KEY_RE.fullmatch(key):
        raise InvalidKeyError("key may only contain A-Z a-z 0-9 / _ . -")
    if key.startswith("/") or key.endswith("/"):
        raise InvalidKeyError("key must not start or end with /")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKeyError("key must not contain empty, . or .. segments")
    return key
