"""The gateway's settings: a frozen dataclass read once from the environment.

`GatewayConfig.from_env()` refuses to build a config without `CHATMESH_JWT_SECRET`, so the gateway
never starts unable to verify tokens. Every limit of SPEC "Limits" that the edge enforces is here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import env_float, env_int


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Settings of one gateway process. Durations are seconds, sizes bytes."""

    jwt_secret: str
    host: str = "127.0.0.1"
    # 0 picks a free port (tests and the dev runner).
    port: int = 8080
    # The ChatService / EventService gRPC target.
    chat_target: str = "127.0.0.1:50051"
    # The PresenceService gRPC target; empty disables presence and typing (their frames answer
    # ERROR_CODE_UNIMPLEMENTED). The same target as chat_target shares its channel.
    presence_target: str = ""
    # Users one socket may watch (presence_subscribe), in all.
    max_presence_subscriptions: int = 500
    # One client frame; bigger frames close the socket with 1009 (SPEC "Limits").
    max_frame_bytes: int = 64 * 1024
    # Sends (send_message frames) per user, across all of the user's sockets on this gateway.
    send_rate_per_s: float = 20.0
    send_burst: int = 40
    # Bad frames within the window that close the socket as abuse (1008).
    bad_frame_limit: int = 10
    bad_frame_window_s: float = 10.0
    # Time allowed for an `auth` frame when the token is not in Sec-WebSocket-Protocol.
    auth_timeout_s: float = 10.0
    # Protocol-level pings are sent this often; a socket silent for three times as long is closed.
    heartbeat_interval_s: float = 20.0
    # Frames waiting to be written to one socket; overflowing closes it with 4008 (slow consumer).
    outbound_queue_max: int = 1000
    # A socket whose write has been blocked this long (client not reading) is closed with 4008.
    send_stall_timeout_s: float = 30.0
    # Requests handled at once per socket; more wait (the socket stops being read meanwhile).
    max_inflight_requests: int = 64
    # Deadline of each ChatService call.
    rpc_timeout_s: float = 15.0
    # Time allowed for a closing handshake before the TCP connection is dropped.
    close_timeout_s: float = 5.0
    # Reconnect backoff of a broken event stream (doubling, full jitter).
    resubscribe_initial_s: float = 0.1
    resubscribe_max_s: float = 5.0
    # How long the event stream opened at authentication holds its items for the app's first
    # frame: a `resume` then replays first; after this the held items are written as live.
    live_start_delay_s: float = 1.0
    # At most this many characters in a client's request_id.
    max_request_id_chars: int = 64
    # Prometheus endpoint; a negative port disables it, 0 picks a free port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = -1

    def __post_init__(self) -> None:
        if not self.jwt_secret:
            raise ConfigError("CHATMESH_JWT_SECRET is required: the gateway cannot verify tokens")
        positive = {
            "max_frame_bytes": self.max_frame_bytes,
            "send_rate_per_s": self.send_rate_per_s,
            "send_burst": self.send_burst,
            "bad_frame_limit": self.bad_frame_limit,
            "bad_frame_window_s": self.bad_frame_window_s,
            "auth_timeout_s": self.auth_timeout_s,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "outbound_queue_max": self.outbound_queue_max,
            "send_stall_timeout_s": self.send_stall_timeout_s,
            "max_inflight_requests": self.max_inflight_requests,
            "rpc_timeout_s": self.rpc_timeout_s,
            "close_timeout_s": self.close_timeout_s,
            "resubscribe_initial_s": self.resubscribe_initial_s,
            "resubscribe_max_s": self.resubscribe_max_s,
            "live_start_delay_s": self.live_start_delay_s,
            "max_request_id_chars": self.max_request_id_chars,
            "max_presence_subscriptions": self.max_presence_subscriptions,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        """Reads the settings once; unset variables keep their defaults."""
        source = {k: v.strip() for k, v in (os.environ if env is None else env).items()}

        return cls(
            jwt_secret=source.get("CHATMESH_JWT_SECRET", ""),
            host=source.get("CHATMESH_WS_HOST", "").strip() or "127.0.0.1",
            port=env_int(source, "CHATMESH_WS_PORT", 8080),
            chat_target=source.get("CHATMESH_CHAT_TARGET", "").strip() or "127.0.0.1:50051",
            presence_target=source.get("CHATMESH_PRESENCE_TARGET", "").strip(),
            max_frame_bytes=env_int(source, "CHATMESH_WS_MAX_FRAME_BYTES", 64 * 1024),
            send_rate_per_s=env_float(source, "CHATMESH_WS_SEND_RATE_PER_S", 20.0),
            send_burst=env_int(source, "CHATMESH_WS_SEND_BURST", 40),
            bad_frame_limit=env_int(source, "CHATMESH_WS_BAD_FRAME_LIMIT", 10),
            bad_frame_window_s=env_float(source, "CHATMESH_WS_BAD_FRAME_WINDOW_S", 10.0),
            auth_timeout_s=env_float(source, "CHATMESH_WS_AUTH_TIMEOUT_S", 10.0),
            heartbeat_interval_s=env_float(source, "CHATMESH_WS_HEARTBEAT_INTERVAL_S", 20.0),
            outbound_queue_max=env_int(source, "CHATMESH_WS_OUTBOUND_QUEUE_MAX", 1000),
            send_stall_timeout_s=env_float(source, "CHATMESH_WS_SEND_STALL_TIMEOUT_S", 30.0),
            max_inflight_requests=env_int(source, "CHATMESH_WS_MAX_INFLIGHT_REQUESTS", 64),
            rpc_timeout_s=env_float(source, "CHATMESH_WS_RPC_TIMEOUT_S", 15.0),
            metrics_host=source.get("CHATMESH_WS_METRICS_HOST", "").strip() or "127.0.0.1",
            # The process entry point serves metrics unless told otherwise.
            metrics_port=env_int(source, "CHATMESH_WS_METRICS_PORT", 9102),
        )
