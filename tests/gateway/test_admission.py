"""Admission at the gateway: browser origins, sockets per address and per user, and addresses that
keep failing authentication. The pure rules on a manual clock, then each through a live gateway."""

from __future__ import annotations

import pytest
from chatmesh.gateway.v1 import gateway_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from gateway_ws.admission import Admission

from .client import GatewayClient
from .conftest import GatewayFactory, token
from .fake_chat import FakeChat

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _admission(clock: Clock, **overrides: object) -> Admission:
    settings: dict[str, object] = {
        "allowed_origins": ("https://app.example",),
        "max_sockets_per_ip": 2,
        "max_sockets_per_user": 2,
        "auth_failures_per_min": 6.0,
        "auth_failure_burst": 2,
        "monotonic": clock,
        **overrides,
    }
    return Admission(**settings)  # type: ignore[arg-type]


def test_an_origin_off_the_list_is_refused_and_native_apps_pass() -> None:
    admission = _admission(Clock())
    assert admission.refuse_handshake("1.2.3.4", "https://app.example") is None
    assert admission.refuse_handshake("1.2.3.4", "https://APP.example/") is None
    assert admission.refuse_handshake("1.2.3.4", None) is None
    refusal = admission.refuse_handshake("1.2.3.4", "https://evil.example")
    assert refusal is not None and refusal.status == 403


def test_sockets_per_address_are_capped_and_freed_on_close() -> None:
    admission = _admission(Clock())
    for _ in range(2):
        assert admission.refuse_handshake("1.2.3.4", None) is None
        admission.opened("1.2.3.4")
    refusal = admission.refuse_handshake("1.2.3.4", None)
    assert refusal is not None and refusal.status == 429 and refusal.retry_after_s > 0
    assert admission.refuse_handshake("5.6.7.8", None) is None
    admission.closed("1.2.3.4", "")
    assert admission.refuse_handshake("1.2.3.4", None) is None


def test_failed_authentications_make_the_address_wait_then_it_may_retry() -> None:
    clock = Clock()
    admission = _admission(clock)
    for _ in range(3):
        admission.auth_failed("1.2.3.4")
    refusal = admission.refuse_handshake("1.2.3.4", None)
    assert refusal is not None and refusal.status == 429
    assert refusal.retry_after_header == "10"
    assert admission.refuse_handshake("5.6.7.8", None) is None
    clock.now += refusal.retry_after_s
    assert admission.refuse_handshake("1.2.3.4", None) is None


def test_a_user_past_the_socket_limit_is_refused_until_one_closes() -> None:
    admission = _admission(Clock())
    assert admission.admit_user("alice") is None
    assert admission.admit_user("alice") is None
    assert admission.admit_user("alice") is not None
    assert admission.admit_user("bob") is None
    admission.closed("1.2.3.4", "alice")
    assert admission.admit_user("alice") is None


async def test_live_origin_allow_list(gateway_factory: GatewayFactory, fake_chat: FakeChat) -> None:
    """403 before the upgrade for a foreign origin; the allowed one connects."""
    gateway = await gateway_factory(
        fake_chat.target,
        allowed_origins=("https://app.example",),
    )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(gateway.url, origin=Origin("https://evil.example")):
            pass
    assert refused.value.response.status_code == 403
    client = await GatewayClient.connect(
        gateway.url,
        token("alice"),
        origin=Origin("https://app.example"),
    )
    await client.close()


async def test_live_user_socket_limit(gateway_factory: GatewayFactory, fake_chat: FakeChat) -> None:
    """The user's next socket gets RESOURCE_EXHAUSTED with a retry-after and close 1013."""
    gateway = await gateway_factory(
        fake_chat.target,
        max_sockets_per_user=1,
    )
    first = await GatewayClient.connect(gateway.url, token("alice", "phone"))
    second = await GatewayClient.connect(gateway.url, token("alice", "laptop"), expect_ready=False)
    code, _reason = await second.closed()
    assert code == 1013
    errors = [f for f, _ in second.received if f.HasField("error")]
    assert errors and errors[0].error.code == gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED
    assert errors[0].error.retry_after_ms > 0
    await first.ping()
    await first.close()


async def test_live_auth_failures_per_address(
    gateway_factory: GatewayFactory, fake_chat: FakeChat
) -> None:
    """Past the allowance of bad tokens, the address gets 429 with Retry-After at the handshake."""
    gateway = await gateway_factory(
        fake_chat.target,
        auth_failures_per_min=1.0,
        auth_failure_burst=2,
    )
    for _ in range(3):
        bad = await GatewayClient.connect(gateway.url, "not-a-token", expect_ready=False)
        await bad.closed()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(gateway.url):
            pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1
