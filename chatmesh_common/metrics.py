"""Prometheus metrics shared by every service, and the endpoint that exposes them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from chatmesh_common.settings import BindError

GRPC_HANDLED = Counter(
    "chatmesh_grpc_server_handled_total",
    "gRPC calls handled, by method and status code.",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "chatmesh_grpc_server_handling_seconds",
    "Time to handle a unary gRPC call.",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WS_CONNECTIONS = Counter(
    "chatmesh_ws_connections_total", "WebSocket connections accepted, by close code.", ["code"]
)
WS_OPEN_SOCKETS = Gauge(
    "chatmesh_ws_open_sockets", "WebSocket connections open now (authenticated or not)."
)
WS_ONLINE_USERS = Gauge(
    "chatmesh_ws_online_users", "Distinct users with an authenticated socket open on this gateway."
)
WS_FRAMES = Counter(
    "chatmesh_ws_frames_total",
    "WebSocket frames received, by frame type and outcome.",
    ["frame", "outcome"],
)


def serve_metrics(host: str, port: int, setting_name: str = "CHATMESH_METRICS_PORT") -> int:
    """Starts the /metrics endpoint on a daemon thread; returns the bound port (0 = disabled)."""
    if port < 0:
        return 0
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise BindError(f"{host}:{port}", setting_name, exc.strerror or str(exc)) from exc
    return int(server.server_port)
