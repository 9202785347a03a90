"""Acknowledged sends per second through chat_service's gRPC API, on the embedded store.

    python -m bench.grpc_send [--senders 200] [--seconds 10] [--conversations 20]

Starts chat_service in-process on a temporary data dir, then runs `--senders` concurrent senders
spread over `--conversations` groups, each sending as fast as its acknowledgements return.
Prints sends per second and ack latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2

from chat_service.config import ChatConfig
from chat_service.server import build_chat_service
from chatmesh_common.auth import auth_metadata, issue_token
from chatmesh_common.clock import SystemClock

SECRET = "bench-secret"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(senders: int, seconds: float, conversations: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        server = build_chat_service(
            ChatConfig(jwt_secret=SECRET, data_dir=data_dir, grpc_bind="127.0.0.1:0", drain_s=0),
            clock=SystemClock(),
        )
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        users = [f"user{i}" for i in range(senders)]
        tokens = {u: auth_metadata(issue_token(SECRET, u)) for u in users}
        conversation_ids = []
        per_conv = max(1, senders // conversations)
        for c in range(conversations):
            members = users[c * per_conv : (c + 1) * per_conv] or users[:1]
            created = await stub.CreateConversation(
                pb.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_GROUP, title=f"g{c}", member_ids=members
                ),
                metadata=tokens[members[0]],
            )
            conversation_ids.append(created.conversation.conversation.conversation_id)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def sender(index: int) -> None:
            user = users[index]
            cid = conversation_ids[min(index // per_conv, len(conversation_ids) - 1)]
            n = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await stub.SendMessage(
                    pb.SendMessageRequest(
                        conversation_id=cid, client_msg_id=f"{user}-{n}", body="hello world"
                    ),
                    metadata=tokens[user],
                )
                latencies.append(time.perf_counter() - started)
                n += 1

        began = time.perf_counter()
        await asyncio.gather(*(sender(i) for i in range(senders)))
        elapsed = time.perf_counter() - began
        await channel.close(None)
        await server.stop()
    return {
        "sends": len(latencies),
        "sends_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "p999_ms": _percentile(latencies, 0.999) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--senders", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--conversations", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.senders, args.seconds, args.conversations))
    print("command: python -m bench.grpc_send " + " ".join(sys.argv[1:]))
    for key, value in result.items():
        print(f"{key:12} {value:,.2f}")


if __name__ == "__main__":
    main()
