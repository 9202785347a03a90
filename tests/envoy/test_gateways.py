"""Two gateways behind Envoy: a gateway that drains (SIGTERM, /healthz 503 for the drain window)
gets no new sockets while its open ones keep working, and a WebSocket lives past the timeouts
that end ordinary requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatmesh_common.auth import issue_token
from tests.envoy.conftest import SECRET
from tests.gateway.client import GatewayClient, eventually
from tests.servers.envoy import EdgeStack, EnvoyProxy, TlsFiles, gateway_process
from tests.servers.ports import free_port
from tests.servers.services import ChatmeshProcess

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(90)]


@dataclass
class TwoGateways:
    first: ChatmeshProcess
    first_target: str
    second: ChatmeshProcess
    second_target: str
    envoy: EnvoyProxy


@pytest.fixture
def gateways(
    tmp_path: Path, envoy_binary: str, tls_files: TlsFiles, edge: EdgeStack
) -> Iterator[TwoGateways]:
    """Two gateways on the edge stack's chat_service, each draining 5 s on SIGTERM."""
    ports = free_port(), free_port()
    drain = {"CHATMESH_DRAIN_S": "5"}
    first, second = (
        gateway_process(tmp_path / f"gateway-{i}.log", port, edge.chat_target, SECRET, drain)
        for i, port in enumerate(ports)
    )
    targets = [f"127.0.0.1:{port}" for port in ports]
    proxy = EnvoyProxy(
        envoy_binary, tmp_path / "envoy", tls_files, chat=[edge.chat_target], gateway=targets
    )
    try:
        first.start()
        second.start()
        proxy.start()
        proxy.wait_healthy("gateway", 2)
        yield TwoGateways(first, targets[0], second, targets[1], proxy)
    finally:
        proxy.stop()
        first.kill()
        second.stop()


async def _sends(client: GatewayClient, cid: str, client_msg_id: str) -> None:
    answer = await client.call(
        "send_message", conversation_id=cid, client_msg_id=client_msg_id, body="still here"
    )
    assert answer.send_message.message.body == "still here"


@pytest.mark.slow
async def test_a_draining_gateway_gets_no_new_sockets(gateways: TwoGateways) -> None:
    """SIGTERM one gateway: Envoy's health checks see its 503 and send every new socket to the
    other, while a socket already open on the draining one still sends."""
    envoy = gateways.envoy
    olds: list[GatewayClient] = []
    # Until one socket is open on the first gateway (rq_active: requests open on that host).
    for i in range(8):
        olds.append(await GatewayClient.connect(envoy.ws_url, issue_token(SECRET, f"old{i}")))
        if envoy.host_counter("gateway", gateways.first_target, "rq_active") >= 1:
            break
    assert envoy.host_counter("gateway", gateways.first_target, "rq_active") >= 1
    cids = [await client.create_group("peer") for client in olds]
    assert gateways.first.process is not None
    gateways.first.process.terminate()  # SIGTERM: the drain window starts
    await asyncio.to_thread(envoy.wait_healthy, "gateway", 1, 5.0)
    assert envoy.healthy_hosts("gateway") == [gateways.second_target]

    news = [
        await GatewayClient.connect(f"{envoy.ws_url}?socket=new{i}", issue_token(SECRET, f"n{i}"))
        for i in range(6)
    ]
    for i, (client, cid) in enumerate(zip(olds, cids, strict=True)):
        await _sends(client, cid, f"during-drain-{i}")
    for client in [*olds, *news]:
        await client.close()

    # A WebSocket's access log line is written when it closes.
    def upstreams_of_new_sockets() -> list[str]:
        lines = [json.loads(line) for line in envoy.log_tail(400).splitlines() if "{" in line]
        return [
            entry["upstream"]
            for entry in lines
            if str(entry.get("path", "")).startswith("/v1/ws?socket=new")
        ]

    await eventually(lambda: len(upstreams_of_new_sockets()) == 6)
    assert upstreams_of_new_sockets() == [gateways.second_target] * 6


@pytest.mark.slow
async def test_a_websocket_outlives_a_request_timeout(edge: EdgeStack) -> None:
    """A socket through Envoy that stays open for 20 s (longer than Envoy's default 15 s route
    timeout) still answers: the WebSocket route has no request deadline."""
    client = await GatewayClient.connect(edge.envoy.ws_url, issue_token(SECRET, "patient"))
    try:
        await asyncio.sleep(20)
        answer = await client.ping()
        assert answer.WhichOneof("frame") == "pong", answer
    finally:
        await client.close()
