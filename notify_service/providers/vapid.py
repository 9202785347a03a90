"""VAPID (RFC 8292): the application server's identity towards Web Push services.

The operator makes one P-256 key pair (`generate_vapid_keys`, or
`python -m notify_service.providers.vapid`), keeps the private key in the settings as PEM, and
gives apps the public key (`application_server_key`), which they pass to
`pushManager.subscribe({applicationServerKey})`. A push service then accepts pushes to that
subscription only with an `Authorization: vapid t=<JWT>, k=<public key>` header signed by the
same key.

The JWT is ES256 with `aud` = the origin of the push endpoint, `exp` = now + 12 h and `sub` =
the operator's contact (`mailto:` or `https:` URL). One JWT per audience is reused until an
hour before it expires: push services see a handful of audiences, and signing per push would
cost an ECDSA signature each time.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatmesh_common.clock import Clock

from .common import load_p256_private_key

# RFC 8292 §2: exp no more than 24 h ahead; 12 h leaves room for clock skew at the service.
TOKEN_LIFETIME_S = 12 * 3600
# Sign a new token when the cached one has less than this left.
REFRESH_MARGIN_S = 3600
# Endpoints come from clients; bound the cache so made-up origins cannot grow it without end.
_MAX_CACHED_AUDIENCES = 1024


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding (browsers give it without)."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_vapid_private_key() -> str:
    """A new P-256 private key as PKCS#8 PEM, for the operator's settings."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def generate_vapid_keys() -> tuple[str, str]:
    """A new key pair: (private key PEM for the settings, application server key for apps)."""
    pem = generate_vapid_private_key()
    return pem, application_server_key(pem)


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point (0x04 || X || Y, 65 bytes), the form Web Push uses everywhere."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def application_server_key(pem: str | bytes) -> str:
    """The base64url public key apps pass to `pushManager.subscribe` (and VAPID's `k`)."""
    return b64url_encode(
        public_key_bytes(load_p256_private_key(pem, "vapid private key").public_key())
    )


def audience_of(endpoint: str) -> str:
    """`scheme://host[:port]` of an endpoint: the JWT `aud`. Default ports are left out."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"push endpoint: not an http(s) URL: {endpoint!r}")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def validate_subject(subject: str) -> str:
    if not (subject.startswith("mailto:") and len(subject) > 7) and not subject.startswith(
        "https://"
    ):
        raise ValueError(f"vapid subject: must be a mailto: or https: URL, got {subject!r}")
    return subject


class VapidSigner:
    """Builds the `Authorization` header for one endpoint, reusing a token per audience."""

    def __init__(self, private_key_pem: str | bytes, subject: str, clock: Clock) -> None:
        self._key = load_p256_private_key(private_key_pem, "vapid private key")
        self._subject = validate_subject(subject)
        self._clock = clock
        self.public_key = b64url_encode(public_key_bytes(self._key.public_key()))
        self._tokens: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def token(self, audience: str) -> str:
        now = self._clock.now()
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - now > REFRESH_MARGIN_S:
            self._tokens.move_to_end(audience)
            return cached[0]
        exp = int(now) + TOKEN_LIFETIME_S
        claims = {"aud": audience, "exp": exp, "sub": self._subject}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"typ": "JWT"})
        self._tokens[audience] = (token, exp)
        self._tokens.move_to_end(audience)
        while len(self._tokens) > _MAX_CACHED_AUDIENCES:
            self._tokens.popitem(last=False)
        return token

    def authorization(self, endpoint: str) -> str:
        """`vapid t=<JWT>, k=<public key>` for a push to `endpoint` (RFC 8292 §3)."""
        return f"vapid t={self.token(audience_of(endpoint))}, k={self.public_key}"


if __name__ == "__main__":
    private_pem, public_key = generate_vapid_keys()
    print(private_pem, end="")
    print(f"application server key (for pushManager.subscribe): {public_key}")
