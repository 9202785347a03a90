"""The helpers every push provider shares (notify_service/providers/common.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from notify_service.providers.base import Outcome, PushResult
from notify_service.providers.common import (
    compact_json,
    is_transient,
    load_p256_private_key,
    retry_later,
)
from notify_service.providers.http import Reply


def test_busy_answers_are_retried_after_their_retry_after() -> None:
    """429 and 5xx are transient; Retry-After seconds count from now."""
    assert [is_transient(s) for s in (400, 404, 429, 500, 503)] == [False, False, True, True, True]
    reply = Reply(503, {"retry-after": "12"}, b"")
    assert retry_later(reply, "http 503", 0.0) == PushResult(Outcome.RETRY, 503, "http 503", 12.0)


def test_compact_json_keeps_non_ascii_as_utf8() -> None:
    assert compact_json({"t": "é", "n": [1, 2]}) == '{"t":"é","n":[1,2]}'.encode()


def test_p256_keys_only() -> None:
    """An RSA key, an encrypted key or no PEM at all: ValueError naming the key."""
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
    )
    cases: list[tuple[str | bytes, str]] = [
        (rsa_pem, "signing key: must be an EC key on P-256"),
        (encrypted, "signing key: not an unencrypted PEM private key"),
        ("not a key", "signing key: not an unencrypted PEM private key"),
    ]
    for pem, message in cases:
        with pytest.raises(ValueError, match=message):
            load_p256_private_key(pem, "signing key")
    good = ec.generate_private_key(ec.SECP256R1())
    good_pem = good.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    assert (
        load_p256_private_key(good_pem, "signing key").private_numbers() == good.private_numbers()
    )
