"""`chatmesh serve <service>`: one service per process, settings from the environment.

The same entry as `python -m <package>`: the package's `service_process` (its config read from
the environment, its builder) run by the one runner.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from chatmesh_common.clock import Clock
from chatmesh_common.runner import Process, run_service

# `chatmesh serve <name>` runs the package's server.service_process.
SERVICES = {
    "chat": "chat_service",
    "presence": "presence_service",
    "gateway": "gateway_ws",
    "search": "search_service",
    "notify": "notify_service",
    "media": "media_service",
}


def serve(name: str) -> int:
    """Runs one service until SIGINT or SIGTERM; returns the exit status."""
    package = SERVICES[name]
    # Imported on demand: `serve chat` need not load the gateway's websockets, nor the reverse.
    server = importlib.import_module(f"{package}.server")
    setup = cast(Callable[[Clock], Process], server.service_process)
    return run_service(package, setup)
