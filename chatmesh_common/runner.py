"""The one way a chatmesh process runs, whatever it serves.

`run_service(name, setup)`: JSON logs, uvloop when installed, one clock for the whole process
(handed to `setup`, which reads the config and builds the service with it), the service started,
the Prometheus endpoint, a line saying where it listens, then SIGINT or SIGTERM stops the service
(its drain and grace periods included) and the process exits 0. `run_task(name, main)` is the
same for one-shot commands (`chatmesh migrate`).

A configuration error is one line on stderr, `chatmesh: <name>: <message>`, and exit status 2:
no traceback, so an operator sees the setting to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from chatmesh_common.clock import Clock, SystemClock
from chatmesh_common.logs import configure_logging
from chatmesh_common.metrics import serve_metrics
from chatmesh_common.service import Service
from chatmesh_common.settings import ConfigError, read_env, setting, validate

log = logging.getLogger("chatmesh")

CONFIG_ERROR_EXIT = 2


@dataclass(frozen=True)
class RunnerConfig:
    """Settings every chatmesh process reads, whatever it serves."""

    log_level: str = setting(
        "CHATMESH_LOG_LEVEL",
        "INFO",
        "least severe log level written (logs are JSON lines)",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    access_log: bool = setting(
        "CHATMESH_ACCESS_LOG",
        False,
        "write one JSON line per gRPC call (method, code, duration_ms, peer, request_id)",
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class Process:
    """What `setup` returns: the service, where to serve metrics, and what to print once up."""

    service: Service
    metrics_host: str = "127.0.0.1"
    # Negative: no endpoint (e.g. the service's port is scraped some other way); 0: a free port.
    metrics_port: int = -1
    # Given the bound metrics port (0 when none), the line printed once the service serves.
    banner: Callable[[int], str] | None = None
    # The setting a bind error of the metrics endpoint names.
    metrics_setting: str = "CHATMESH_METRICS_PORT"


def _event_loop_run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def _config_error(name: str, exc: ConfigError) -> int:
    print(f"chatmesh: {name}: {exc}", file=sys.stderr, flush=True)
    return CONFIG_ERROR_EXIT


def _prepare_logs() -> None:
    config = read_env(RunnerConfig)
    configure_logging(config.log_level)
    logging.getLogger("chatmesh.access").setLevel(
        logging.INFO if config.access_log else logging.WARNING
    )
    # websockets logs every connection opened and closed at INFO: too much at 10k sockets.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def run_service(name: str, setup: Callable[[Clock], Process]) -> int:
    """Runs a service until SIGINT or SIGTERM; returns the exit status."""
    try:
        _prepare_logs()
    except ConfigError as exc:
        return _config_error(name, exc)
    return _event_loop_run(lambda: _serve(name, setup))


async def _serve(name: str, setup: Callable[[Clock], Process]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Installed before start-up: a SIGTERM while starting stops the service once it is up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    clock = SystemClock()
    try:
        process = setup(clock)
        await process.service.start()
    except ConfigError as exc:
        return _config_error(name, exc)
    try:
        metrics_port = 0
        if process.metrics_port >= 0:
            metrics_port = serve_metrics(
                process.metrics_host, process.metrics_port, process.metrics_setting
            )
        if process.banner is not None:
            print(process.banner(metrics_port), flush=True)
        await stop.wait()
        log.info("%s shutting down", name)
    except ConfigError as exc:
        return _config_error(name, exc)
    finally:
        # Also when the metrics port is taken: the service's own shutdown still runs.
        await process.service.stop()
    return 0


def run_task(name: str, main: Callable[[], Awaitable[None]]) -> int:
    """Runs a one-shot command; returns the exit status."""
    try:
        _prepare_logs()
    except ConfigError as exc:
        return _config_error(name, exc)

    async def task() -> int:
        try:
            await main()
        except ConfigError as exc:
            return _config_error(name, exc)
        return 0

    return _event_loop_run(task)
