"""User tokens from an identity provider: RS256 / ES256 / EdDSA keys, JWKS, issuer, audience, and
the token attacks a verifier must refuse. The JWKS is served by a local HTTP server standing in for
the provider."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from chatmesh_common.auth import Identity, TokenError, issue_token, user_token_verifier
from chatmesh_common.identity import IssuerSettings, JwksKeys
from chatmesh_common.rpc import Authenticator
from chatmesh_common.settings import ConfigError

SECRET = "shared-secret-for-the-identity-tests-0123456789"
ISSUER = "https://id.example.test/"
AUDIENCE = "chatmesh"
NOW = 1_900_000_000.0


def _claims(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "alice",
        "did": "laptop",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + 600,
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def _pem(public_key: Any, path: Path) -> str:
    path.write_bytes(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _settings(**values: Any) -> IssuerSettings:
    return IssuerSettings(issuer=ISSUER, audience=AUDIENCE, **values)


def test_rs256_token_from_a_configured_public_key_file_is_accepted(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """A token signed with the provider's RSA key verifies against its PEM public key."""
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    assert verifier.verify(token) == Identity("alice", "laptop")


def test_the_shared_secret_keeps_working_beside_the_provider(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """chatmesh's own HS256 tokens (`chatmesh token`) stay valid when an IdP is configured."""
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    assert verifier.verify(issue_token(SECRET, "bob", "phone", now=NOW)) == Identity("bob", "phone")


def test_without_a_provider_an_asymmetric_token_is_refused_by_name(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """No IdP configured: an RS256 token gets an error naming the settings to set."""
    verifier = user_token_verifier(SECRET, clock=lambda: NOW)
    with pytest.raises(TokenError, match="CHATMESH_JWT_JWKS_URL"):
        verifier.verify(jwt.encode(_claims(), rsa_key, algorithm="RS256"))


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_alg_none_is_refused(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """An unsigned token is refused whatever it claims."""
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    with pytest.raises(TokenError, match="not accepted"):
        verifier.verify(_unsigned(_claims()))


def test_hs256_signed_with_the_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Algorithm confusion: the public PEM used as an HMAC secret never verifies."""
    pem_path = _pem(rsa_key.public_key(), tmp_path / "idp.pem")
    verifier = user_token_verifier(
        SECRET, clock=lambda: NOW, issuer=_settings(public_key_files=(pem_path,))
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    signing_input = header + b"." + body
    mac = hmac.new(Path(pem_path).read_bytes(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    with pytest.raises(TokenError, match="Signature verification failed"):
        verifier.verify(forged)


def test_a_token_without_exp_is_refused(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    with pytest.raises(TokenError, match="exp"):
        verifier.verify(jwt.encode(_claims(exp=None), rsa_key, algorithm="RS256"))


def test_a_token_with_nbf_in_the_future_is_refused(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    token = jwt.encode(_claims(nbf=int(NOW) + 3600), rsa_key, algorithm="RS256")
    with pytest.raises(TokenError, match="nbf"):
        verifier.verify(token)
    hs = jwt.encode({"sub": "a", "exp": int(NOW) + 60, "nbf": int(NOW) + 3600}, SECRET, "HS256")
    with pytest.raises(TokenError, match="nbf"):
        verifier.verify(hs)


@pytest.mark.parametrize(
    ("claims", "rule"),
    [
        (_claims(iss="https://evil.example/"), "(?i)issuer"),
        (_claims(iss=None), "iss"),
        (_claims(aud="someone-else"), "(?i)audience"),
        (_claims(aud=None), "aud"),
    ],
)
def test_issuer_and_audience_are_enforced(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path, claims: dict[str, Any], rule: str
) -> None:
    """A token of another issuer or for another audience, or naming none, is refused."""
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    with pytest.raises(TokenError, match=rule):
        verifier.verify(jwt.encode(claims, rsa_key, algorithm="RS256"))


def test_an_algorithm_outside_the_allow_list_is_refused(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    settings = _settings(
        algorithms=("ES256",),
        public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),),
    )
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=settings)
    with pytest.raises(TokenError, match="RS256"):
        verifier.verify(jwt.encode(_claims(), rsa_key, algorithm="RS256"))


def test_settings_refuse_hs256_as_a_provider_algorithm() -> None:
    """HS256 is the shared secret's, never a provider key's: the setting says so."""
    with pytest.raises(ConfigError, match="HS256"):
        IssuerSettings(algorithms=("HS256",))


class _Jwks:
    """A JWKS endpoint whose key set the test changes (key rotation); counts requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"

    def add(self, jwk_json: str, kid: str, alg: str) -> None:
        self.keys.append({**json.loads(jwk_json), "kid": kid, "alg": alg, "use": "sig"})


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    endpoint = _Jwks()
    thread = threading.Thread(target=endpoint.server.serve_forever, daemon=True)
    thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_jwks_keys_verify_es256_and_eddsa(
    jwks: _Jwks, ec_key: ec.EllipticCurvePrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    """Keys published in a JWKS verify the tokens that name them by kid."""
    jwks.add(ECAlgorithm.to_jwk(ec_key.public_key()), "ec-1", "ES256")
    jwks.add(OKPAlgorithm.to_jwk(ed_key.public_key()), "ed-1", "EdDSA")
    verifier = user_token_verifier(SECRET, clock=lambda: NOW, issuer=_settings(jwks_url=jwks.url))
    es = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    ed = jwt.encode(_claims(sub="bob"), ed_key, algorithm="EdDSA", headers={"kid": "ed-1"})
    assert verifier.verify(es).user_id == "alice"
    assert verifier.verify(ed).user_id == "bob"
    assert jwks.requests == 1


def test_an_unknown_kid_refetches_the_jwks_once_per_interval(
    jwks: _Jwks, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Key rotation is picked up at once; made-up kids cannot make the verifier hammer the IdP."""
    clock = [0.0]
    keys = JwksKeys(jwks.url, min_refresh_s=30, timeout_s=2, clock=lambda: clock[0])
    with pytest.raises(Exception, match="kid"):
        keys.key_for("rotated", "RS256")
    assert jwks.requests == 1
    jwks.add(RSAAlgorithm.to_jwk(rsa_key.public_key()), "rotated", "RS256")
    clock[0] = 31.0
    assert keys.key_for("rotated", "RS256") is not None
    assert jwks.requests == 2
    for i in range(50):
        with pytest.raises(Exception, match="kid"):
            keys.key_for(f"made-up-{i}", "RS256")
    assert jwks.requests == 2


def test_an_unreachable_jwks_keeps_the_keys_it_had(jwks: _Jwks, rsa_key: rsa.RSAPrivateKey) -> None:
    """A provider outage does not log everybody out."""
    jwks.add(RSAAlgorithm.to_jwk(rsa_key.public_key()), "k1", "RS256")
    clock = [0.0]
    keys = JwksKeys(jwks.url, min_refresh_s=0, timeout_s=1, clock=lambda: clock[0])
    assert keys.key_for("k1", "RS256") is not None
    jwks.server.shutdown()
    jwks.server.server_close()
    with pytest.raises(Exception, match="kid"):
        keys.key_for("k2", "RS256")
    assert keys.key_for("k1", "RS256") is not None


def test_the_authenticator_accepts_provider_tokens_on_user_rpcs(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """What every service builds: from_secrets with the issuer settings."""
    settings = _settings(public_key_files=(_pem(rsa_key.public_key(), tmp_path / "idp.pem"),))
    authenticator = Authenticator.from_secrets(
        SECRET, "service-secret", clock=time.time, issuer=settings
    )
    claims = _claims(iat=int(time.time()), exp=int(time.time()) + 60)
    token = jwt.encode(claims, rsa_key, algorithm="RS256")
    caller = authenticator.authenticate(
        (("authorization", f"Bearer {token}"),), "chatmesh.chat.v1.ChatService", "GetConversation"
    )
    assert caller == Identity("alice", "laptop")


def _service_configs() -> dict[str, Any]:
    from chat_service.config import ChatConfig
    from media_service.config import MediaConfig
    from notify_service.config import NotifyConfig
    from presence_service.config import PresenceConfig
    from search_service.config import SearchConfig

    return {c.__name__: c for c in (ChatConfig, MediaConfig, NotifyConfig, PresenceConfig,
                                    SearchConfig)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_service_configs()))
def test_every_service_accepts_provider_tokens_from_its_environment(
    name: str, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Each service's config reads CHATMESH_JWT_* and its authenticator honours it."""
    env = {
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": "service-secret-for-the-identity-tests",
        "CHATMESH_JWT_PUBLIC_KEY_FILES": _pem(rsa_key.public_key(), tmp_path / "idp.pem"),
        "CHATMESH_JWT_ISSUER": ISSUER,
        "CHATMESH_JWT_AUDIENCE": AUDIENCE,
    }
    config = _service_configs()[name].from_env(env)
    authenticator = Authenticator.for_config(config, time.time)
    claims = _claims(iat=int(time.time()), exp=int(time.time()) + 60)
    token = jwt.encode(claims, rsa_key, algorithm="RS256")
    caller = authenticator.authenticate(
        (("authorization", f"Bearer {token}"),), "chatmesh.chat.v1.ChatService", "GetConversation"
    )
    assert caller == Identity("alice", "laptop")


def test_a_full_cache_drops_its_oldest_token_not_all_of_them() -> None:
    """With more live tokens than cache slots, recent tokens stay cached (no re-verify storm)."""
    verifier = user_token_verifier(SECRET, clock=lambda: NOW)
    verifier._cache_size = 3
    tokens = [issue_token(SECRET, f"u{i}", now=NOW) for i in range(4)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._cache) == tokens[1:]
