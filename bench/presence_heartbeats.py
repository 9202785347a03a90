"""Heartbeats per second presence_service sustains on Redis, and the Redis work per heartbeat.

    python -m bench.presence_heartbeats [--redis-url URL] [--users 2000] [--concurrency 200]
                                        [--seconds 5]

Without --redis-url it starts a throwaway `redis-server` on a free port. It measures:

* backend: `RedisPresenceBackend.heartbeat` called directly by `--concurrency` tasks over
  `--users` users (steady state: every user already online);
* grpc: the full `PresenceService/Heartbeat` RPC (token check, servicer, backend) from clients in
  the same process, so the figure is a lower bound for one presence process;

and from Redis's INFO, per heartbeat: commands sent by the client (round trips) and commands run
inside the Lua script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import redis.asyncio as aioredis
from chatmesh.presence.v1 import presence_service_pb2 as ppb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token
from chatmesh_common.clock import SystemClock
from presence_service.backends.redis import RedisPresenceBackend
from presence_service.config import PresenceConfig
from presence_service.server import build_presence_service

SECRET = "bench-secret-bench-secret-bench-secret"
TTL_S = 30.0


@contextlib.contextmanager
def _redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


async def _command_stats(client: aioredis.Redis) -> tuple[int, dict[str, int]]:
    stats: dict[str, Any] = await client.info("stats")
    commands: dict[str, Any] = await client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()}
    return int(stats["total_commands_processed"]), calls


async def _drive(
    concurrency: int, seconds: float, beat: Callable[[int], Awaitable[Any]]
) -> tuple[int, float]:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal done
        i = index
        while time.perf_counter() < stop_at:
            await beat(i)
            done += 1
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done, time.perf_counter() - started


async def run(url: str, users: int, concurrency: int, seconds: float) -> dict[str, float]:
    prefix = f"bench:{os.getpid()}:"
    admin = aioredis.Redis.from_url(url)
    backend = RedisPresenceBackend(url, prefix=prefix)
    names = [f"user{i}" for i in range(users)]
    for name in names:  # steady state: everyone online already
        await backend.heartbeat(name, "d\x1fc", time.time(), TTL_S)

    before_total, before_calls = await _command_stats(admin)
    count, elapsed = await _drive(
        concurrency,
        seconds,
        lambda i: backend.heartbeat(names[i % users], "d\x1fc", time.time(), TTL_S),
    )
    after_total, after_calls = await _command_stats(admin)
    # Client commands: the script calls (Redis 7 also counts commands run inside Lua in
    # total_commands_processed, so that total is everything Redis executed).
    round_trips = (
        sum(after_calls.get(name, 0) - before_calls.get(name, 0) for name in ("evalsha", "eval"))
        / count
    )
    # INFO itself counts: two calls between the snapshots.
    executed = (after_total - before_total - 2) / count
    inner = {
        name: (after_calls.get(name, 0) - before_calls.get(name, 0)) / count
        for name in after_calls
        if name not in ("evalsha", "eval", "info", "hello", "ping", "client|setinfo")
        and after_calls.get(name, 0) != before_calls.get(name, 0)
    }
    results: dict[str, float] = {
        "backend_heartbeats_per_s": count / elapsed,
        "redis_round_trips_per_heartbeat": round_trips,
        "redis_commands_in_lua_per_heartbeat": sum(inner.values()),
        "redis_commands_executed_per_heartbeat": executed,
    }
    for name, per in sorted(inner.items()):
        results[f"  lua {name}"] = per

    config = PresenceConfig(
        jwt_secret=SECRET,
        # Heartbeats ask chat_service nothing; presence still holds a service credential.
        service_secret=SECRET[::-1],
        grpc_bind="127.0.0.1:0",
        backend="redis",
        redis_url=url,
        redis_prefix=prefix,
        ttl_s=TTL_S,
        shutdown_grace_s=0.5,
        drain_s=0,
    )
    server = build_presence_service(config, clock=SystemClock())
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub: Any = presence_service_pb2_grpc.PresenceServiceStub(channel)
    metadata = [auth_metadata(issue_token(SECRET, name, "d")) for name in names]
    request = ppb.HeartbeatRequest(connection_id="c")
    count, elapsed = await _drive(
        concurrency, seconds, lambda i: stub.Heartbeat(request, metadata=metadata[i % users])
    )
    results["grpc_heartbeats_per_s"] = count / elapsed

    await channel.close(None)
    await server.stop()
    keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
    if keys:
        await admin.delete(*keys)
    await admin.aclose()
    await backend.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(_redis_server())
        coroutine = run(url, args.users, args.concurrency, args.seconds)
        try:
            import uvloop
        except ImportError:
            results = asyncio.run(coroutine)
        else:
            results = uvloop.run(coroutine)
    for name, value in results.items():
        print(f"{name:40s} {value:12.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
