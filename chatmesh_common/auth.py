"""Credentials: user tokens and service tokens, both HS256 JWTs, never one taken for the other.

A user token (`sub` the user, `did` the device) is what apps present; an app's own auth server
may mint it with the user secret (`CHATMESH_JWT_SECRET`). A service token (`sub` the calling
service, `scope` what it may ask) is what one chatmesh service presents to another on no user's
behalf; it is signed with a separate secret (`CHATMESH_SERVICE_SECRET`). Two things keep the kinds
apart, each enough alone: the keys differ (config refuses equal secrets), and every token names
its kind in the `knd` claim: a service token must say `service`, and a user token that says
anything but `user` is refused (a user token without `knd` is accepted, for issuers that predate
the claim). docs/identity.md describes the scheme.

The gateway and every service verify tokens themselves; no service trusts an identity header.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import jwt
from jwt.types import Options

from chatmesh_common.identity import IssuerSettings, KeySource, UnknownKeyError, key_source
from chatmesh_common.limits import LIMITS, MAX_TOKEN_LEEWAY_S

KIND_CLAIM = "knd"
USER_KIND = "user"
SERVICE_KIND = "service"
# Service tokens are short-lived; a ServiceCredential mints a new one at half this age.
SERVICE_TOKEN_TTL_S = 300


class TokenError(Exception):
    """The token is missing, malformed, badly signed, expired or of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A user acting through one device (a user token)."""

    user_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """A chatmesh service acting on no user's behalf (a service token)."""

    service: str
    scopes: frozenset[str]


def issue_token(
    secret: str,
    user_id: str,
    device_id: str = "default",
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Signs a token for a user's device, valid for ttl_s seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user_id,
        "did": device_id,
        KIND_CLAIM: USER_KIND,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def issue_service_token(
    secret: str,
    service: str,
    scopes: Collection[str],
    ttl_s: int = SERVICE_TOKEN_TTL_S,
    now: float | None = None,
) -> str:
    """Signs a token naming a calling service and its scopes, valid for ttl_s seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": service,
        "scope": " ".join(sorted(scopes)),
        KIND_CLAIM: SERVICE_KIND,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _claim_id(claims: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = claims.get(name, default)
    if not isinstance(value, str) or not value or len(value) > LIMITS.max_id_chars:
        raise TokenError(
            f"invalid token: {name} must be a non-empty string of at most "
            f"{LIMITS.max_id_chars} chars"
        )
    return value


T = TypeVar("T", Identity, ServiceIdentity)


class _Verifier(Generic[T]):
    """Checks signature and expiry, then the kind; caches recent good tokens so hot paths skip
    the signature and JSON work.

    HS256 tokens are checked with the secret. With an identity provider configured (`keys`),
    tokens signed with one of its algorithms are checked with its public keys, issuer and
    audience (chatmesh_common.identity); the token's header never chooses the key kind.
    """

    def __init__(
        self,
        secret: str,
        leeway_s: float = MAX_TOKEN_LEEWAY_S,
        clock: Callable[[], float] = time.time,
        cache_size: int = 16_384,
        *,
        keys: KeySource | None = None,
        issuer: IssuerSettings | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._secret = secret
        self._leeway_s = min(leeway_s, MAX_TOKEN_LEEWAY_S)
        self._clock = clock
        # Least recently used first: a full cache drops its oldest entry, never all of them
        # (clearing it whole made every socket's next heartbeat re-verify its token).
        self._cache: OrderedDict[str, tuple[T, float]] = OrderedDict()
        self._cache_size = cache_size
        self._keys = keys
        self._issuer = issuer if keys is not None else None

    def verify(self, token: str) -> T:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            identity, expires_at = cached
            if now <= expires_at + self._leeway_s:
                self._cache.move_to_end(token)
                return identity
            del self._cache[token]
        if not token:
            raise TokenError("missing token")
        claims = self._decode(token)
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise TokenError("invalid token: exp is not a number")
        if now > exp + self._leeway_s:
            raise TokenError("token expired")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int | float) or nbf > now + self._leeway_s):
            raise TokenError("invalid token: not valid yet (nbf is in the future)")
        identity = self._identity(claims)
        if len(self._cache) >= self._cache_size:
            self._cache.popitem(last=False)
        self._cache[token] = (identity, float(exp))
        return identity

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        algorithm = header.get("alg")
        # Expiry, nbf and iat are judged by the injected clock (verify), not by PyJWT's.
        required = ["sub", "exp"]
        options: Options = {
            "require": required,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        try:
            if algorithm == "HS256":
                return jwt.decode(token, self._secret, algorithms=["HS256"], options=options)
            if self._keys is None or self._issuer is None:
                raise TokenError(
                    f"invalid token: algorithm {algorithm!r} not accepted (only HS256 with the"
                    " shared secret; configure CHATMESH_JWT_JWKS_URL or"
                    " CHATMESH_JWT_PUBLIC_KEY_FILES for an identity provider)"
                )
            if algorithm not in self._issuer.algorithms:
                raise TokenError(f"invalid token: algorithm {algorithm!r} not accepted")
            kid = header.get("kid")
            key = self._keys.key_for(kid if isinstance(kid, str) else None, algorithm)
            if self._issuer.issuer:
                required.append("iss")
            if self._issuer.audience:
                required.append("aud")
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options=options,
                issuer=self._issuer.issuer or None,
                audience=self._issuer.audience or None,
            )
        except UnknownKeyError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError(
                f"invalid token: {exc} (a token signed with another secret or key is the"
                " likely cause: was it minted with this deployment's CHATMESH_JWT_SECRET?)"
            ) from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc

    def _identity(self, claims: Mapping[str, Any]) -> T:
        raise NotImplementedError


class TokenVerifier(_Verifier[Identity]):
    """Verifies user tokens (signed with the user secret)."""

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        kind = claims.get(KIND_CLAIM, USER_KIND)
        if kind != USER_KIND:
            raise TokenError(f"invalid token: {KIND_CLAIM} is {kind!r}, not a user token")
        return Identity(_claim_id(claims, "sub"), _claim_id(claims, "did", "default"))


def user_token_verifier(
    secret: str,
    leeway_s: float = MAX_TOKEN_LEEWAY_S,
    clock: Callable[[], float] = time.time,
    issuer: IssuerSettings | None = None,
) -> TokenVerifier:
    """The user token verifier of a process: the shared secret, plus the identity provider's
    keys when `issuer` configures one."""
    keys = key_source(issuer) if issuer is not None else None
    return TokenVerifier(secret, leeway_s, clock, keys=keys, issuer=issuer)


class ServiceTokenVerifier(_Verifier[ServiceIdentity]):
    """Verifies service tokens (signed with the service secret, `knd` = service)."""

    def _identity(self, claims: Mapping[str, Any]) -> ServiceIdentity:
        kind = claims.get(KIND_CLAIM)
        if kind != SERVICE_KIND:
            raise TokenError(f"invalid token: {KIND_CLAIM} is {kind!r}, not a service token")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("invalid token: scope must be a space-separated string")
        return ServiceIdentity(_claim_id(claims, "sub"), frozenset(scope.split()))


class ServiceCredential:
    """What a service sends when it calls another on no user's behalf: a service token naming
    it and its scopes, minted again when half its lifetime has passed."""

    def __init__(
        self,
        secret: str,
        service: str,
        scopes: Collection[str],
        ttl_s: int = SERVICE_TOKEN_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the service secret must not be empty")
        self._secret = secret
        self.service = service
        self.scopes = frozenset(scopes)
        self._ttl_s = ttl_s
        self._clock = clock
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = self._clock()
        if now >= self._renew_at:
            self._token = issue_service_token(
                self._secret, self.service, self.scopes, self._ttl_s, now
            )
            self._renew_at = now + self._ttl_s / 2
        return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the current service token."""
        return auth_metadata(self.token())


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
