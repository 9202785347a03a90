"""Fixtures of the gateway tests: a gateway on a free port in front of a peer on a free port.

`fake_chat` is the in-memory ChatService/EventService double (tests/gateway/fake_chat.py);
`chat_server` is the real chat_service on a temporary data dir. `gateway_factory` starts
gateways with settings a test chooses and stops them at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatmesh_common.auth import issue_token
from gateway.fake_chat import FakeChat
from gateway_ws.config import GatewayConfig
from gateway_ws.server import Gateway, start_gateway

SECRET = "gateway-tests-secret-of-at-least-32-bytes"

GatewayFactory = Callable[..., Awaitable[Gateway]]


def token(user_id: str, device_id: str = "phone", ttl_s: int = 3600) -> str:
    return issue_token(SECRET, user_id, device_id, ttl_s=ttl_s)


def base_config(**overrides: Any) -> GatewayConfig:
    config = GatewayConfig(jwt_secret=SECRET, host="127.0.0.1", port=0, metrics_port=-1)
    return dataclasses.replace(config, **overrides)


@pytest.fixture
async def fake_chat() -> AsyncIterator[FakeChat]:
    fake = FakeChat(SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop(0)


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def start(
        target: str, channel: grpc.aio.Channel | None = None, **overrides: Any
    ) -> Gateway:
        gateway = await start_gateway(base_config(chat_target=target, **overrides), channel)
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            await gateway.stop()


@pytest.fixture
async def gateway(fake_chat: FakeChat, gateway_factory: GatewayFactory) -> Gateway:
    """A gateway with default limits in front of the fake chat service."""
    return await gateway_factory(fake_chat.target)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "chat-data"
