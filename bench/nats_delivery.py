"""End-to-end delivery latency across two gateways and two chat_service replicas over NATS.

    python -m bench.nats_delivery [--rate 50] [--seconds 10] [--nats-url nats://...]

Starts nats-server -js (unless --nats-url is given), two `chatmesh serve chat` processes on one
SQLite file with CHATMESH_BUS=nats, and two `chatmesh serve gateway` processes (g1 in front of
replica a, g2 in front of replica b), through the tests' process launcher. alice on g1 sends to
a direct conversation with bob on g2 at a steady rate; the latency of a message is the time from
writing the send frame on alice's socket to its event arriving on bob's socket (one clock: both
sockets live in this process).
Prints p50, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.system import ChatServiceProcess, GatewayProcess, ServiceProcess, free_port
from chatmesh_common.auth import auth_metadata, issue_token

SECRET = "bench-secret-of-at-least-thirty-two-bytes"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _spawn(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *args,
            env={**os.environ, "CHATMESH_LOG_LEVEL": "WARNING", **env},
            stdout=out,
            stderr=out,
        )


async def _wait_port(port: int, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def _socket(url: str, user: str) -> ClientConnection:
    token = issue_token(SECRET, user, "bench")
    ws = await connect(
        url, subprotocols=[Subprotocol("chatmesh.v1"), Subprotocol(f"bearer.{token}")]
    )
    await ws.recv()  # ready
    # A resume with no cursors starts the event stream; wait for its answer.
    await ws.send(json.dumps({"requestId": "start", "resume": {}}))
    while "resumed" not in json.loads(await ws.recv()):
        pass
    return ws


async def run(rate: float, seconds: float, nats_url: str | None) -> dict[str, float]:
    nats: asyncio.subprocess.Process | None = None
    services: list[ServiceProcess] = []
    chats: list[ChatServiceProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            if nats_url is None:
                binary = shutil.which("nats-server") or str(
                    Path(sys.executable).parent / "nats-server"
                )
                nats_port = free_port()
                nats = await _spawn(
                    [binary, "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", tmp],
                    {},
                    work / "nats.log",
                )
                await _wait_port(nats_port)
                nats_url = f"nats://127.0.0.1:{nats_port}"
            chats = [
                ChatServiceProcess(
                    {
                        "CHATMESH_JWT_SECRET": SECRET,
                        "CHATMESH_DATA_DIR": str(work / "chat"),
                        "CHATMESH_BUS": "nats",
                        "CHATMESH_NATS_URLS": nats_url,
                    },
                    work / f"chat-{name}.log",
                )
                for name in ("a", "b")
            ]
            gateways = [
                GatewayProcess(
                    {
                        "CHATMESH_JWT_SECRET": SECRET,
                        "CHATMESH_CHAT_TARGET": chat.target,
                        "CHATMESH_WS_SEND_RATE_PER_S": "100000",
                        "CHATMESH_WS_SEND_BURST": "100000",
                    },
                    work / f"gateway-{name}.log",
                )
                for name, chat in zip(("g1", "g2"), chats, strict=True)
            ]
            for service in (*chats, *gateways):
                services.append(service)
                await service.start()
            return await _measure(
                rate, seconds, chats[0].port, [gateway.port for gateway in gateways]
            )
        finally:
            for service in reversed(services):
                await service.stop()
            for chat in chats:
                await chat.channel.close(None)
            if nats is not None:
                with contextlib.suppress(ProcessLookupError):
                    nats.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await nats.wait()


async def _measure(
    rate: float, seconds: float, chat_port: int, ws_ports: list[int]
) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{chat_port}") as channel:
        stub: Any = chat_service_pb2_grpc.ChatServiceStub(channel)
        reply = await stub.CreateConversation(
            pb.CreateConversationRequest(kind=1, member_ids=["bob"]),  # type: ignore[arg-type]
            metadata=auth_metadata(issue_token(SECRET, "alice", "bench")),
        )
        conversation_id = reply.conversation.conversation.conversation_id
    alice = await _socket(f"ws://127.0.0.1:{ws_ports[0]}/v1/ws", "alice")
    bob = await _socket(f"ws://127.0.0.1:{ws_ports[1]}/v1/ws", "bob")
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    total = int(rate * seconds)

    async def receive() -> None:
        while len(latencies) < total:
            frame = json.loads(await bob.recv())
            message = frame.get("event", {}).get("messageCreated", {}).get("message")
            if message and message["clientMsgId"] in sent_at:
                latencies.append(time.perf_counter() - sent_at.pop(message["clientMsgId"]))

    async def drain_acks() -> None:
        with contextlib.suppress(Exception):
            while True:
                await alice.recv()

    receiver = asyncio.create_task(receive())
    acks = asyncio.create_task(drain_acks())
    started = time.perf_counter()
    for i in range(total):
        # Steady rate: each send at its slot, whatever the previous one cost.
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key = f"m-{i}"
        frame = {
            "requestId": key,
            "sendMessage": {"conversationId": conversation_id, "clientMsgId": key, "body": key},
        }
        sent_at[key] = time.perf_counter()
        await alice.send(json.dumps(frame))
    async with asyncio.timeout(30):
        await receiver
    acks.cancel()
    await alice.close()
    await bob.close()
    ms = [v * 1000 for v in latencies]
    return {
        "messages": len(ms),
        "p50_ms": _percentile(ms, 0.50),
        "p90_ms": _percentile(ms, 0.90),
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": max(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="sends per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nats-url", default=None, help="use this NATS instead of starting one")
    args = parser.parse_args()
    result = asyncio.run(run(args.rate, args.seconds, args.nats_url))
    print(
        f"{int(result['messages'])} messages at {args.rate:g}/s across two gateways:"
        f" p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms,"
        f" p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
