"""The settings of `chatmesh dev` itself, read by dev and by the worker it starts."""

from __future__ import annotations

from dataclasses import dataclass

from chatmesh_common.settings import ConfigError, setting, validate


@dataclass(frozen=True)
class DevConfig:
    """Settings of `chatmesh dev` itself; the services' own settings apply too."""

    ws_bind: str = setting("CHATMESH_WS_BIND", "127.0.0.1:8080", "host:port of dev's WebSocket")
    metrics_bind: str = setting(
        "CHATMESH_METRICS_BIND", "127.0.0.1:9100", "host:port of dev's Prometheus endpoint"
    )
    # No load balancer to drain in dev: Ctrl-C stops at once unless asked otherwise.
    drain_s: float = setting(
        "CHATMESH_DRAIN_S", 0.0, "seconds health reports NOT_SERVING before dev stops", minimum=0
    )
    consumers: str = setting(
        "CHATMESH_DEV_CONSUMERS",
        "process",
        "where dev runs the search indexer and push: `process` (a worker process dev starts,"
        " restarts and stops, on the second core) or `inline` (dev's own event loop)",
        choices=("process", "inline"),
    )
    gateways: int = setting(
        "CHATMESH_DEV_GATEWAYS",
        0,
        "gateway processes dev starts beside its own on the WebSocket port (SO_REUSEPORT), each"
        " calling chat over gRPC on dev's port",
        minimum=0,
        maximum=16,
    )
    consumers_metrics_bind: str = setting(
        "CHATMESH_DEV_CONSUMERS_METRICS_BIND",
        "127.0.0.1:0",
        "host:port of the consumer worker's Prometheus endpoint (port 0: any free, shown in"
        " the banner)",
    )
    consumers_poll_s: float = setting(
        "CHATMESH_DEV_CONSUMERS_POLL_S",
        0.02,
        "how often the consumer worker looks for events dev appended to the log",
        positive=True,
    )

    def __post_init__(self) -> None:
        validate(self)


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what} must be HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)
