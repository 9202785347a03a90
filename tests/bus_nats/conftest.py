"""Fixtures of the NATS tests: a NatsBus on the session's nats-server, and a small cluster of
two chat_service processes (one SQLite file) and two gateways, all on that server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatmesh_common.bus.nats import NatsBus, NatsSettings
from tests.servers.nats import NatsServer

from .cluster import ChatProcess, GatewayProcess

# Channels of more than 3 members fan out on read in these tests.
THRESHOLD = 3


@pytest.fixture
async def nats_bus(nats_server: NatsServer) -> AsyncIterator[NatsBus]:
    bus = await NatsBus.connect(NatsSettings(urls=(nats_server.url,), reconnect_wait_s=0.1))
    await bus.ensure_stream()
    try:
        yield bus
    finally:
        await bus.close()


@dataclass
class Cluster:
    chats: list[ChatProcess]
    gateways: list[GatewayProcess]


@pytest.fixture
async def cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    """chat a and b share one data dir; gateway g1 talks to a, g2 to b."""
    data_dir = tmp_path / "chat-data"
    env = {"CHATMESH_FANOUT_READ_THRESHOLD": str(THRESHOLD)}
    chats = [ChatProcess(n, data_dir, nats_server.url, tmp_path, **env) for n in ("a", "b")]
    gateways: list[GatewayProcess] = []
    try:
        for chat in chats:
            await chat.start()
        gw_env = {"CHATMESH_WS_SEND_BURST": "1000", "CHATMESH_WS_SEND_RATE_PER_S": "1000"}
        gateways = [
            GatewayProcess("g1", chats[0].target, tmp_path, **gw_env),
            GatewayProcess("g2", chats[1].target, tmp_path, **gw_env),
        ]
        for gateway in gateways:
            await gateway.start()
        yield Cluster(chats, gateways)
    finally:
        for gateway in gateways:
            await gateway.stop()
        for chat in chats:
            await chat.close()
