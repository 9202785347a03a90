"""`python -m gateway_ws`: runs the gateway from the environment until SIGINT or SIGTERM.

Exits with status 2 when a setting is missing or malformed (CHATMESH_JWT_SECRET is required).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from chatmesh_common.logs import configure_logging
from gateway_ws.config import ConfigError, GatewayConfig
from gateway_ws.server import start_gateway


async def _run(config: GatewayConfig) -> None:
    gateway = await start_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()


def main() -> int:
    configure_logging()
    # websockets logs every connection opened and closed at INFO: too much at 10k sockets.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        config = GatewayConfig.from_env()
    except ConfigError as exc:
        print(f"gateway_ws: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run(config))
    else:
        uvloop.run(_run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
