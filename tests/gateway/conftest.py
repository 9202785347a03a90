"""Fixtures of the gateway tests: a gateway on a free port in front of a peer on a free port.

`chat` is the real chat_service on a temporary data dir and `gateway` a gateway in front of it;
`fake_chat` is the in-memory ChatService/EventService double (tests/gateway/fake_chat.py) for the
failures the real service cannot be made to produce, with `fake_gateway` in front of it
(tests/gateway/test_fake_matches_chat.py keeps the two services in agreement).
`gateway_factory` starts gateways with settings a test chooses and stops them at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from chat_service.config import ChatConfig
from chat_service.server import ChatService, build_chat_service
from chatmesh_common.auth import issue_token
from chatmesh_common.clock import SystemClock
from gateway_ws.config import GatewayConfig
from gateway_ws.server import Gateway, start_gateway
from tests.gateway.fake_chat import FakeChat

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
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "chat-data"


class Chat:
    """The real chat_service (SQLite in a temp dir), restartable on the same port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.server: ChatService | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = ChatConfig(
            jwt_secret=SECRET,
            data_dir=str(self.data_dir),
            grpc_bind=f"127.0.0.1:{self.port}",
            drain_s=0,
        )
        self.server = build_chat_service(config, clock=SystemClock())
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    chat = Chat(tmp_path / "chat")
    chat.data_dir.mkdir()
    await chat.start()
    try:
        yield chat
    finally:
        await chat.stop()


@pytest.fixture
async def gateway(chat: Chat, gateway_factory: GatewayFactory) -> Gateway:
    """A gateway with default limits in front of the real chat_service."""
    return await gateway_factory(chat.target)


@pytest.fixture
async def fake_gateway(fake_chat: FakeChat, gateway_factory: GatewayFactory) -> Gateway:
    """A gateway with default limits in front of the fake, for tests that inject failures."""
    return await gateway_factory(fake_chat.target)
