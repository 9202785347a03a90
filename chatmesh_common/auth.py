"""Tokens: HS256 JWTs whose `sub` is the user and `did` the device.

The gateway and every service verify tokens themselves; no service trusts an identity header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt

MAX_LEEWAY_S = 10.0


class TokenError(Exception):
    """The token is missing, malformed, badly signed or expired."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    device_id: str


def issue_token(
    secret: str,
    user_id: str,
    device_id: str = "default",
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Signs a token for a user's device, valid for ttl_s seconds."""
    issued = int(time.time() if now is None else now)
    claims = {"sub": user_id, "did": device_id, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies tokens, caching recent good ones so hot paths skip the HMAC and JSON work."""

    def __init__(
        self,
        secret: str,
        leeway_s: float = MAX_LEEWAY_S,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
    ) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._secret = secret
        self._leeway_s = min(leeway_s, MAX_LEEWAY_S)
        self._clock = clock
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._cache_size = cache_size

    def verify(self, token: str) -> Identity:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            identity, expires_at = cached
            if now <= expires_at + self._leeway_s:
                return identity
            del self._cache[token]
        if not token:
            raise TokenError("missing token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                leeway=self._leeway_s,
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise TokenError("invalid token: exp is not a number")
        if now > exp + self._leeway_s:
            raise TokenError("token expired")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise TokenError("invalid token: sub must be a non-empty string of at most 128 chars")
        device = claims.get("did", "default")
        if not isinstance(device, str) or not device or len(device) > 128:
            raise TokenError("invalid token: did must be a non-empty string of at most 128 chars")
        identity = Identity(sub, device)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = (identity, float(exp))
        return identity


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an `authorization: Bearer <token>` metadata entry, or ''."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries a token to a service."""
    return (("authorization", f"Bearer {token}"),)
