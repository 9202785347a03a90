"""The gateway's settings: each declared once (chatmesh_common.settings), read once from the env.

The gateway never starts without `CHATMESH_JWT_SECRET`, so it is never unable to verify tokens.
Every limit of SPEC "Limits" that the edge enforces is here. Durations are seconds, sizes bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.identity import IssuerSettings
from chatmesh_common.limits import LIMITS
from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import (
    drain_setting,
    environ,
    jwt_secret_setting,
    leeway_setting,
    mode_setting,
    read_env,
    setting,
    validate,
)
from chatmesh_common.tls import TlsSettings
from gateway_ws.admission import trusted_networks


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Settings of one gateway process."""

    jwt_secret: str = jwt_secret_setting()
    host: str = setting("CHATMESH_WS_HOST", "127.0.0.1", "host the WebSocket server listens on")
    port: int = setting(
        "CHATMESH_WS_PORT",
        8080,
        "port of the WebSocket server (0: any free)",
        minimum=0,
        maximum=65535,
    )
    reuse_port: bool = setting(
        "CHATMESH_WS_REUSE_PORT",
        False,
        "listen with SO_REUSEPORT, so several gateway processes share the port (chatmesh dev's"
        " extra gateways)",
    )
    chat_target: str = setting(
        "CHATMESH_CHAT_TARGET", "127.0.0.1:50051", "the ChatService / EventService gRPC target"
    )
    presence_target: str = setting(
        "CHATMESH_PRESENCE_TARGET",
        "",
        "the PresenceService gRPC target; empty: presence and typing frames are unimplemented",
    )
    media_target: str = setting(
        "CHATMESH_MEDIA_TARGET",
        "",
        "the MediaService gRPC target; empty: the chat target (one server, as in chatmesh dev)",
    )
    search_target: str = setting(
        "CHATMESH_SEARCH_TARGET",
        "",
        "the SearchService gRPC target; empty: the chat target (one server, as in chatmesh dev)",
    )
    notify_target: str = setting(
        "CHATMESH_NOTIFY_TARGET",
        "",
        "the NotifyService gRPC target; empty: the chat target (one server, as in chatmesh dev)",
    )
    max_presence_subscriptions: int = setting(
        "CHATMESH_WS_MAX_PRESENCE_SUBSCRIPTIONS",
        LIMITS.max_presence_subscriptions,
        "users one socket may watch, in all",
        positive=True,
    )
    max_frame_bytes: int = setting(
        "CHATMESH_WS_MAX_FRAME_BYTES",
        LIMITS.max_frame_bytes,
        "largest client frame; a bigger one closes the socket with 1009",
        positive=True,
    )
    send_rate_per_s: float = setting(
        "CHATMESH_WS_SEND_RATE_PER_S",
        LIMITS.send_rate_per_s,
        "sends per user per second, across their sockets",
        positive=True,
    )
    send_burst: int = setting(
        "CHATMESH_WS_SEND_BURST", LIMITS.send_burst, "sends a user may make at once", positive=True
    )
    bad_frame_limit: int = setting(
        "CHATMESH_WS_BAD_FRAME_LIMIT",
        LIMITS.bad_frame_limit,
        "bad frames within the window that close a socket (1008)",
        positive=True,
    )
    bad_frame_window_s: float = setting(
        "CHATMESH_WS_BAD_FRAME_WINDOW_S",
        LIMITS.bad_frame_window_s,
        "the window of the bad frame limit",
        positive=True,
    )
    auth_timeout_s: float = setting(
        "CHATMESH_WS_AUTH_TIMEOUT_S", 10.0, "time allowed for an auth frame", positive=True
    )
    heartbeat_interval_s: float = setting(
        "CHATMESH_WS_HEARTBEAT_INTERVAL_S",
        20.0,
        "protocol pings are sent this often; a socket silent three times as long is closed",
        positive=True,
    )
    outbound_queue_max: int = setting(
        "CHATMESH_WS_OUTBOUND_QUEUE_MAX",
        1000,
        "frames waiting for one socket; overflowing closes it with 4008",
        positive=True,
    )
    send_stall_timeout_s: float = setting(
        "CHATMESH_WS_SEND_STALL_TIMEOUT_S",
        30.0,
        "a socket whose write is blocked this long is closed with 4008",
        positive=True,
    )
    max_inflight_requests: int = setting(
        "CHATMESH_WS_MAX_INFLIGHT_REQUESTS",
        64,
        "requests handled at once per socket",
        positive=True,
    )
    rpc_timeout_s: float = setting(
        "CHATMESH_WS_RPC_TIMEOUT_S", 15.0, "deadline of each ChatService call", positive=True
    )
    close_timeout_s: float = setting(
        "CHATMESH_WS_CLOSE_TIMEOUT_S", 5.0, "time allowed for a closing handshake", positive=True
    )
    event_streams: str = setting(
        "CHATMESH_WS_EVENT_STREAMS",
        "multiplexed",
        "how sockets' event streams reach chat_service: `multiplexed` (all on one"
        " SubscribeEventsMultiplexed call per chat channel) or `per_device` (a SubscribeEvents"
        " call per socket); in process (chatmesh dev) always per device",
        choices=("multiplexed", "per_device"),
    )
    event_calls: int = setting(
        "CHATMESH_WS_EVENT_CALLS",
        8,
        "multiplexed calls per chat channel, sockets spread over them in turn: one call writes"
        " its items one at a time, so several keep a busy gateway's deliveries from queueing"
        " behind each other",
        positive=True,
    )
    resubscribe_initial_s: float = setting(
        "CHATMESH_WS_RESUBSCRIBE_INITIAL_S",
        0.1,
        "first reconnect delay of a broken event stream (doubling, full jitter)",
        positive=True,
    )
    resubscribe_max_s: float = setting(
        "CHATMESH_WS_RESUBSCRIBE_MAX_S",
        5.0,
        "longest reconnect delay of an event stream",
        positive=True,
    )
    max_request_id_chars: int = setting(
        "CHATMESH_WS_MAX_REQUEST_ID_CHARS",
        LIMITS.max_request_id_chars,
        "longest request_id a client may send",
        positive=True,
    )
    live_start_delay_s: float = setting(
        "CHATMESH_WS_LIVE_START_DELAY_S",
        1.0,
        "events are held this long after auth for a `resume` to come first",
        positive=True,
    )
    token_leeway_s: float = leeway_setting()
    metrics_host: str = setting(
        "CHATMESH_WS_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_WS_METRICS_PORT", 9102, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    drain_s: float = drain_setting()
    # Admission (gateway_ws/admission.py): limits per gateway process.
    allowed_origins: tuple[str, ...] = setting(
        "CHATMESH_WS_ALLOWED_ORIGINS",
        (),
        "browser origins allowed to open sockets, comma-separated (empty: any; native apps"
        " send no Origin and are always let through)",
    )
    max_sockets_per_ip: int = setting(
        "CHATMESH_WS_MAX_SOCKETS_PER_IP",
        1000,
        "open sockets from one client address (0: no limit; see CHATMESH_WS_TRUSTED_PROXIES)",
        minimum=0,
    )
    trusted_proxies: str = setting(
        "CHATMESH_WS_TRUSTED_PROXIES",
        "",
        "addresses or CIDRs of proxies (Envoy) whose X-Forwarded-For names the client, for the"
        " per-address limits; empty: the peer address is the client's",
    )
    max_sockets_per_user: int = setting(
        "CHATMESH_WS_MAX_SOCKETS_PER_USER", 20, "open sockets of one user (0: no limit)", minimum=0
    )
    auth_failures_per_min: float = setting(
        "CHATMESH_WS_AUTH_FAILURES_PER_MIN",
        30.0,
        "failed authentications per minute from one address before it must wait (0: no limit)",
        minimum=0,
    )
    auth_failure_burst: int = setting(
        "CHATMESH_WS_AUTH_FAILURE_BURST",
        10,
        "failed authentications one address may make in a row",
        minimum=1,
    )
    # The browser client (gateway_ws/web.py); `chatmesh dev` turns both on.
    mode: str = mode_setting()
    web_client: bool = setting(
        "CHATMESH_WS_WEB_CLIENT",
        False,
        "serve the web client (gateway_ws/web/) at / on the WebSocket port",
    )
    dev_tokens: bool = setting(
        "CHATMESH_WS_DEV_TOKENS",
        False,
        "answer GET /dev/token?user=ID with a user token signed with CHATMESH_JWT_SECRET, for"
        " anyone who can reach the port (development only; CHATMESH_MODE=cluster refuses it)",
    )
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    # The shared CHATMESH_TLS_* settings: with a certificate the listener serves wss (no client
    # certificate asked), and calls to the services use TLS (docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)

    def __post_init__(self) -> None:
        validate(self)
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"CHATMESH_WS_TRUSTED_PROXIES: {exc}") from exc
        if self.dev_tokens and self.mode == "cluster":
            raise ConfigError(
                "CHATMESH_MODE=cluster refuses CHATMESH_WS_DEV_TOKENS: anyone reaching the port"
                " could sign in as anyone; unset it"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        """Reads the settings once; unset variables keep their defaults."""
        source = environ(env)
        return replace(
            read_env(cls, source),
            identity=IssuerSettings.from_env(source),
            tls=TlsSettings.from_env(source),
        )
