"""User tokens signed by an identity provider: its public keys, issuer and audience.

chatmesh's own user tokens are HS256 with the shared secret (`CHATMESH_JWT_SECRET`; `chatmesh
token` and an app's auth server mint them). A real deployment usually has an identity provider that
signs with RS256, ES256 or EdDSA and publishes its keys: configure its PEM public key files or its
JWKS URL here, and every service and gateway then accepts those tokens too. The algorithm a token
may use is fixed by the key that verifies it, never by the token: an HS256 token is only ever
checked with the shared secret, an asymmetric one only with a public key of a permitted algorithm,
so `alg: none` and algorithm confusion (an HS256 token "signed" with a public key) are refused.

A JWKS is fetched at first use and again when a token names a `kid` it does not hold (key
rotation), at most once per `CHATMESH_JWT_JWKS_MIN_REFRESH_S`, so a flood of made-up kids cannot
turn into a flood of fetches.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt

from chatmesh_common.settings import ConfigError, read_env, setting, validate

log = logging.getLogger(__name__)

# The asymmetric algorithms an identity provider may sign with.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class UnknownKeyError(Exception):
    """No key verifies this token (unknown kid, wrong algorithm, JWKS unreachable)."""


@dataclass(frozen=True)
class IssuerSettings:
    """The identity provider whose tokens are accepted besides the HS256 shared secret."""

    algorithms: tuple[str, ...] = setting(
        "CHATMESH_JWT_ALGORITHMS",
        ("RS256", "ES256", "EdDSA"),
        "algorithms accepted from the identity provider's keys, comma-separated",
    )
    public_key_files: tuple[str, ...] = setting(
        "CHATMESH_JWT_PUBLIC_KEY_FILES",
        (),
        "PEM public key files of the identity provider, comma-separated",
    )
    jwks_url: str = setting(
        "CHATMESH_JWT_JWKS_URL", "", "the identity provider's JWKS URL (keys fetched and cached)"
    )
    jwks_min_refresh_s: float = setting(
        "CHATMESH_JWT_JWKS_MIN_REFRESH_S",
        30.0,
        "least time between two JWKS fetches (an unknown kid triggers one)",
        minimum=0,
    )
    jwks_timeout_s: float = setting(
        "CHATMESH_JWT_JWKS_TIMEOUT_S", 2.0, "time a JWKS fetch may take", positive=True
    )
    issuer: str = setting(
        "CHATMESH_JWT_ISSUER", "", "the `iss` the provider's tokens must carry (empty: any)"
    )
    audience: str = setting(
        "CHATMESH_JWT_AUDIENCE", "", "the `aud` the provider's tokens must carry (empty: none)"
    )

    def __post_init__(self) -> None:
        validate(self)
        unknown = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if unknown:
            raise ConfigError(
                f"CHATMESH_JWT_ALGORITHMS: {', '.join(unknown)} not allowed; choose from "
                f"{', '.join(ASYMMETRIC_ALGORITHMS)} (HS256 is always checked with the secret)"
            )
        if self.public_key_files and self.jwks_url:
            raise ConfigError(
                "set CHATMESH_JWT_PUBLIC_KEY_FILES or CHATMESH_JWT_JWKS_URL, not both"
            )

    @property
    def configured(self) -> bool:
        return bool(self.public_key_files or self.jwks_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IssuerSettings:
        return read_env(cls, env)


class KeySource(Protocol):
    def key_for(self, kid: str | None, algorithm: str) -> Any:
        """The public key that verifies a token with this header; raises UnknownKeyError."""
        ...


def _family(algorithm: str) -> str:
    return {"R": "RSA", "P": "RSA", "E": "EC"}.get(algorithm[0], "OKP") if algorithm else ""


def _key_family(key: Any) -> str:
    name = type(key).__name__
    if "RSA" in name:
        return "RSA"
    if "EllipticCurve" in name:
        return "EC"
    return "OKP"


class StaticKeys:
    """PEM public keys read once at start-up; a token may name one by kid (the file's stem)."""

    def __init__(self, files: tuple[str, ...]) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        self._keys: dict[str, Any] = {}
        for name in files:
            try:
                self._keys[Path(name).stem] = load_pem_public_key(Path(name).read_bytes())
            except (OSError, ValueError) as exc:
                message = f"CHATMESH_JWT_PUBLIC_KEY_FILES: cannot load {name}: {exc}"
                raise ConfigError(message) from exc

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        if kid is not None and kid in self._keys:
            candidates = [self._keys[kid]]
        else:
            candidates = list(self._keys.values())
        for key in candidates:
            if _key_family(key) == _family(algorithm):
                return key
        raise UnknownKeyError(f"no {algorithm} public key" + (f" with kid {kid!r}" if kid else ""))


Fetch = Callable[[str, float], bytes]


def _http_get(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        body: bytes = answer.read(1 << 20)
        return body


class JwksKeys:
    """Keys from a JWKS URL, cached; refetched for an unknown kid, rate-limited."""

    def __init__(
        self,
        url: str,
        min_refresh_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        fetch: Fetch = _http_get,
    ) -> None:
        self._url = url
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._fetch = fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self.fetches = 0

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        key = self._lookup(kid, algorithm)
        if key is None and self._may_refresh():
            self._refresh()
            key = self._lookup(kid, algorithm)
        if key is None:
            raise UnknownKeyError(f"no {algorithm} key with kid {kid!r} in the JWKS")
        return key

    def _lookup(self, kid: str | None, algorithm: str) -> Any:
        for key_id, jwk in self._keys.items():
            if kid is not None and key_id != kid:
                continue
            if jwk.algorithm_name in (algorithm, "") or _key_family(jwk.key) == _family(algorithm):
                return jwk.key
        return None

    def _may_refresh(self) -> bool:
        now = self._clock()
        return self._fetched_at is None or now - self._fetched_at >= self._min_refresh_s

    def _refresh(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            document = json.loads(self._fetch(self._url, self._timeout_s))
            keys: dict[str, jwt.PyJWK] = {}
            for index, entry in enumerate(document.get("keys", [])):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry.get("kid", index))] = jwt.PyJWK(entry)
                except jwt.PyJWTError as exc:
                    log.warning("JWKS key %s skipped: %s", entry.get("kid", index), exc)
        except (OSError, ValueError, AttributeError) as exc:
            # Keep the keys we had: a provider hiccup must not log everybody out.
            log.warning("JWKS fetch from %s failed: %s", self._url, exc)
            return
        self._keys = keys


def key_source(settings: IssuerSettings) -> KeySource | None:
    """The configured identity provider's keys, or None (only the shared secret is trusted)."""
    if settings.public_key_files:
        return StaticKeys(settings.public_key_files)
    if settings.jwks_url:
        return JwksKeys(settings.jwks_url, settings.jwks_min_refresh_s, settings.jwks_timeout_s)
    return None
