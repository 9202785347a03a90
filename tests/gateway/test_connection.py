"""GatewayConnection (gateway_ws/connection.py) keeps websockets' flow control: writes wait
while the client reads nothing and all go through once it reads again."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from gateway_ws.connection import GatewayConnection

from .client import eventually

pytestmark = pytest.mark.timeout(30)

MESSAGE = b"x" * 100_000
COUNT = 100  # ~10 MB: more than the kernel buffers on both ends take


async def test_writes_wait_for_a_paused_client_then_all_arrive_in_order() -> None:
    """The server's sends block on a client that stopped reading and resume when it reads."""
    sent = asyncio.Event()
    connections: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(ws)
        for i in range(COUNT):
            await ws.send(i.to_bytes(4, "big") + MESSAGE)
        sent.set()
        await ws.wait_closed()

    async with serve(
        handler, "127.0.0.1", 0, create_connection=GatewayConnection, compression=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}", compression=None, max_size=None, max_queue=None
        ) as client:
            client.transport.pause_reading()
            await eventually(lambda: bool(connections) and connections[0].paused, timeout_s=10)
            assert not sent.is_set()  # the handler waits on the paused transport
            assert len(connections[0].drain_waiters) == 1
            client.transport.resume_reading()
            async with asyncio.timeout(20):
                for i in range(COUNT):
                    message = await client.recv()
                    assert isinstance(message, bytes) and message[:4] == i.to_bytes(4, "big")
                await sent.wait()
            assert isinstance(connections[0], GatewayConnection)
            assert not connections[0].drain_waiters
