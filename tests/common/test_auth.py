"""User and service tokens: each verifies only as its own kind (separate keys and the `knd`
claim), service credentials renew themselves, and settings refuse one secret for both kinds."""

from __future__ import annotations

import jwt
import pytest

from chat_service.config import ChatConfig
from chatmesh_common.auth import (
    Identity,
    ServiceCredential,
    ServiceIdentity,
    ServiceTokenVerifier,
    TokenError,
    TokenVerifier,
    bearer_token,
    issue_service_token,
    issue_token,
)
from chatmesh_common.clock import ManualClock
from chatmesh_common.rpc import Authenticator
from chatmesh_common.settings import ConfigError
from presence_service.config import PresenceConfig

USER_SECRET = "user-secret-for-the-auth-tests-0123456789"
SERVICE_SECRET = "service-secret-for-the-auth-tests-0123456789"


def test_each_kind_verifies_as_itself() -> None:
    """A user token gives the user and device; a service token the service and its scopes."""
    user = TokenVerifier(USER_SECRET).verify(issue_token(USER_SECRET, "alice", "phone"))
    assert user == Identity("alice", "phone")
    service = ServiceTokenVerifier(SERVICE_SECRET).verify(
        issue_service_token(SERVICE_SECRET, "presence", ["chat.access", "x.y"])
    )
    assert service == ServiceIdentity("presence", frozenset({"chat.access", "x.y"}))


def test_the_kind_claim_alone_refuses_a_service_token_as_a_user() -> None:
    """Even signed with the user secret, a token saying knd=service is no user token."""
    token = issue_service_token(USER_SECRET, "presence", ["chat.access"])
    with pytest.raises(TokenError, match="not a user token"):
        TokenVerifier(USER_SECRET).verify(token)


def test_the_kind_claim_alone_refuses_a_user_token_as_a_service() -> None:
    """Even signed with the service secret, a user token (or one without knd) is no service."""
    verifier = ServiceTokenVerifier(SERVICE_SECRET)
    with pytest.raises(TokenError, match="not a service token"):
        verifier.verify(issue_token(SERVICE_SECRET, "alice"))
    bare = jwt.encode({"sub": "presence", "exp": 2**40}, SERVICE_SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="not a service token"):
        verifier.verify(bare)


def test_the_keys_alone_refuse_the_other_kind() -> None:
    """A service token never verifies with the user secret, nor a user token with the other."""
    with pytest.raises(TokenError, match="Signature"):
        TokenVerifier(USER_SECRET).verify(issue_service_token(SERVICE_SECRET, "p", ["s"]))
    with pytest.raises(TokenError, match="Signature"):
        ServiceTokenVerifier(SERVICE_SECRET).verify(issue_token(USER_SECRET, "alice"))


def test_a_user_token_without_a_kind_claim_is_a_user_token() -> None:
    """Apps' own auth servers mint tokens with sub/did/exp only; those stay valid."""
    bare = jwt.encode({"sub": "alice", "did": "web", "exp": 2**40}, USER_SECRET, algorithm="HS256")
    assert TokenVerifier(USER_SECRET).verify(bare) == Identity("alice", "web")


def test_a_service_credential_renews_its_token_at_half_life() -> None:
    """The same token until half its lifetime, then a fresh one that still verifies."""
    clock = ManualClock()
    credential = ServiceCredential(SERVICE_SECRET, "presence", ["chat.access"], 300, clock.now)
    verifier = ServiceTokenVerifier(SERVICE_SECRET, clock=clock.now)
    first = credential.token()
    clock.advance(149)
    assert credential.token() == first
    clock.advance(2)
    renewed = bearer_token(credential.metadata())
    assert renewed != first
    assert verifier.verify(renewed) == ServiceIdentity("presence", frozenset({"chat.access"}))
    clock.advance(300 + 10 + 1)  # past its expiry and the leeway
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(renewed)


def test_one_secret_for_both_kinds_is_refused() -> None:
    """Equal secrets would let the key stop telling the kinds apart."""
    with pytest.raises(ValueError, match="differ"):
        Authenticator.from_secrets(USER_SECRET, USER_SECRET)
    env = {"CHATMESH_JWT_SECRET": USER_SECRET, "CHATMESH_SERVICE_SECRET": USER_SECRET}
    with pytest.raises(ConfigError, match="CHATMESH_SERVICE_SECRET must differ"):
        ChatConfig.from_env(env)
    with pytest.raises(ConfigError, match="CHATMESH_SERVICE_SECRET must differ"):
        PresenceConfig.from_env(env)


def test_presence_needs_a_service_secret_and_chat_reads_one() -> None:
    """presence_service signs its AccessService calls, so it refuses to start without one."""
    with pytest.raises(ConfigError, match="CHATMESH_SERVICE_SECRET is required"):
        PresenceConfig.from_env({"CHATMESH_JWT_SECRET": USER_SECRET})
    env = {"CHATMESH_JWT_SECRET": USER_SECRET, "CHATMESH_SERVICE_SECRET": SERVICE_SECRET}
    assert PresenceConfig.from_env(env).service_secret == SERVICE_SECRET
    assert ChatConfig.from_env(env).service_secret == SERVICE_SECRET
    assert ChatConfig.from_env({"CHATMESH_JWT_SECRET": USER_SECRET}).service_secret == ""
