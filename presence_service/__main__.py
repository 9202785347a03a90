"""`python -m presence_service`: one presence_service process, configured from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from chatmesh_common.logs import configure_logging
from chatmesh_common.metrics import serve_metrics

from .config import ConfigError, PresenceConfig
from .server import start_presence_server


async def _main() -> None:
    try:
        config = PresenceConfig.from_env()
    except ConfigError as exc:
        raise SystemExit(f"presence_service: {exc}") from exc
    server = await start_presence_server(config)
    serve_metrics(config.metrics_host, config.metrics_port)
    print(f"presence_service gRPC on port {server.port} ({config.backend})", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    await done.wait()
    await server.stop()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(_main())
