"""The WebSocket server: wiring, the HTTP side of the handshake, and a graceful stop.

Endpoints: `GET /v1/ws` upgrades to the WebSocket protocol (frames: gateway_ws/frames.py,
sessions: gateway_ws/session.py); `GET /healthz` answers 200 (503 while stopping); any other path
answers 404, except the web client's files and `/dev/token` when their settings are on
(gateway_ws/web.py). Authentication is never read from the URL. With a certificate in the
CHATMESH_TLS_* settings the port serves TLS only (wss://, https:// for /healthz); it never asks
for a client certificate.

Close codes the gateway uses or relies on:

| code | when |
|------|------|
| 1000 | normal closure (the client's, usually) |
| 1001 | going away: the gateway is shutting down |
| 1007 | a text message is not valid UTF-8 (websockets closes it itself) |
| 1008 | policy violation: authentication failed or timed out, or 10 bad frames within 10 s |
| 1009 | a client message over 64 KiB (websockets closes it itself, from `max_size`) |
| 1011 | internal error; also when a keepalive ping gets no pong within two heartbeat intervals |
| 4008 | slow consumer: the outbound queue overflowed or a write stalled (reconnect and resume) |

Shutdown (`GatewayService.stop`): /healthz answers 503 for the drain window (load balancers stop
sending new sockets), then the gateway stops accepting, closes open sockets with 1001, cancels
their event streams and waits for every handler; a client that reads nothing cannot hold it up
past the close timeout. `build_gateway_service` is the one way to make a gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

import grpc
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chatmesh_common.auth import user_token_verifier
from chatmesh_common.clock import Clock, SystemClock
from chatmesh_common.runner import Process
from chatmesh_common.service import Health, Shutdown, drain
from chatmesh_common.settings import BindError
from chatmesh_common.tls import open_channel
from gateway_ws import frames, web
from gateway_ws.admission import Admission, client_address, trusted_networks
from gateway_ws.config import GatewayConfig
from gateway_ws.connection import GatewayConnection
from gateway_ws.event_mux import EventMux
from gateway_ws.metrics import FrameMetrics
from gateway_ws.presence_link import PresenceMethods, heartbeat_loop
from gateway_ws.ratelimit import RateLimiter
from gateway_ws.session import GatewayContext, Session
from gateway_ws.upstream import (
    CHANNEL_OPTIONS,
    MEDIA_SERVICE,
    NOTIFY_SERVICE,
    SEARCH_SERVICE,
    build_routes,
    subscribe_method,
)

if TYPE_CHECKING:
    from chatmesh_common.local_channel import LocalChannel

log = logging.getLogger(__name__)

WS_PATH: Final = "/v1/ws"
HEALTH_PATH: Final = "/healthz"


class Gateway:
    """A running gateway; `stop()` shuts it down gracefully."""

    def __init__(
        self,
        server: Server,
        context: GatewayContext,
        channel: grpc.aio.Channel,
        owns_channel: bool,
        own_channels: list[grpc.aio.Channel],
        host: str,
        port: int,
        scheme: str = "ws",
    ) -> None:
        self._server = server
        self._context = context
        self._channel = channel
        self._owns_channel = owns_channel
        # Channels of the gateway's own to presence and media (when not on the chat channel).
        self._own_channels = own_channels
        self.host = host
        self.port = port
        # wss when the listener serves TLS.
        self.scheme = scheme
        # The drain window before a stop: /healthz says 503, sockets keep working.
        self.draining = False
        self.stopping = False
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep())
        # One heartbeat loop for every socket's presence connection.
        self._heartbeats: asyncio.Task[None] | None = None
        if context.presence is not None:
            self._heartbeats = loop.create_task(heartbeat_loop(context.sessions, loop.time))
        self._stopped = asyncio.Event()

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"{self.scheme}://{self.host}:{self.port}{WS_PATH}"

    @property
    def connection_count(self) -> int:
        return len(self._context.sessions)

    @property
    def event_mux(self) -> EventMux | None:
        """The shared event call to chat_service (None: a stream per socket)."""
        return self._context.event_mux

    async def stop(self) -> None:
        """Stops accepting, closes sockets with 1001, cancels streams, waits for handlers."""
        if self.stopping:
            await self._stopped.wait()
            return
        self.stopping = True
        config = self._context.config
        self._server.close()  # closes open connections with 1001 (going away)
        try:
            async with asyncio.timeout(config.close_timeout_s + 1.0):
                await self._server.wait_closed()
        except TimeoutError:
            # Clients that read nothing cannot take the close frame; drop their connections.
            for session in list(self._context.sessions):
                session.abort()
            await self._server.wait_closed()
        for task in (self._sweeper, self._heartbeats):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._context.event_mux is not None:
            await self._context.event_mux.close()
        for own in self._own_channels:
            await own.close(None)
        if self._owns_channel:
            await self._channel.close(None)
        self._stopped.set()
        log.info("gateway stopped")

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    async def _sweep(self) -> None:
        """Per-socket housekeeping without a timer per socket (see Session.sweep)."""
        config = self._context.config
        period = min(1.0, config.send_stall_timeout_s / 4, config.heartbeat_interval_s / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for session in list(self._context.sessions):
                session.sweep(now)


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    # Browsers fail the connection unless the server picks one of the offered subprotocols; the
    # `bearer.<token>` one is never echoed back.
    if frames.SUBPROTOCOL in offered:
        return Subprotocol(frames.SUBPROTOCOL)
    return None


def _event_mux(config: GatewayConfig, channel: grpc.aio.Channel) -> EventMux | None:
    """The shared event call, unless streams are per device. In process (a LocalChannel, which
    has no client streams) a stream per socket costs no HTTP/2 state, so there is none."""
    if config.event_streams != "multiplexed" or not isinstance(channel, grpc.aio.Channel):
        return None
    return EventMux(channel, config.event_calls)


async def start_gateway(
    config: GatewayConfig,
    chat_channel: grpc.aio.Channel | LocalChannel | None = None,
    clock: Clock | None = None,
) -> Gateway:
    """Starts a gateway on config.host:port (port 0 picks a free one).

    `chat_channel` is the channel to chat_service: a grpc.aio channel, or in one process
    (`chatmesh dev`) a LocalChannel that calls the servicers directly (it has the same
    multicallables); without one the gateway opens its own to config.chat_target (and closes it
    on stop). `clock` drives rate limits and token expiry.
    """
    clock = clock or SystemClock()
    owns_channel = chat_channel is None
    channel = cast(
        grpc.aio.Channel,
        chat_channel or open_channel(config.chat_target, config.tls, CHANNEL_OPTIONS),
    )
    # Presence shares the chat channel when both are served on one port (`chatmesh dev`).
    presence_channel: grpc.aio.Channel | None = None
    presence: PresenceMethods | None = None
    if config.presence_target:
        if config.presence_target == config.chat_target:
            presence = PresenceMethods.on(channel)
        else:
            presence_channel = open_channel(config.presence_target, config.tls, CHANNEL_OPTIONS)
            presence = PresenceMethods.on(presence_channel)
    # Media, search and notify on servers of their own (cluster); else the chat channel (dev).
    elsewhere: dict[str, grpc.aio.Channel] = {}
    for service, target in (
        (MEDIA_SERVICE, config.media_target),
        (SEARCH_SERVICE, config.search_target),
        (NOTIFY_SERVICE, config.notify_target),
    ):
        if target and target != config.chat_target:
            elsewhere[service] = open_channel(target, config.tls, CHANNEL_OPTIONS)
    own_channels = [c for c in (presence_channel, *elsewhere.values()) if c is not None]
    context = GatewayContext(
        config=config,
        clock=clock,
        verifier=user_token_verifier(
            config.jwt_secret, config.token_leeway_s, clock.now, config.identity
        ),
        send_limiter=RateLimiter(config.send_rate_per_s, config.send_burst, clock.monotonic),
        routes=build_routes(channel, elsewhere),
        subscribe=subscribe_method(channel),
        event_mux=_event_mux(config, channel),
        metrics=FrameMetrics(),
        presence=presence,
        admission=Admission(
            allowed_origins=config.allowed_origins,
            max_sockets_per_ip=config.max_sockets_per_ip,
            max_sockets_per_user=config.max_sockets_per_user,
            auth_failures_per_min=config.auth_failures_per_min,
            auth_failure_burst=config.auth_failure_burst,
            monotonic=clock.monotonic,
        ),
        trusted_proxies=trusted_networks(config.trusted_proxies),
    )
    gateway: Gateway | None = None

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return _admit(connection, request)
        if path == HEALTH_PATH:
            if gateway is None or gateway.draining or gateway.stopping:
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "stopping\n")
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        page = web.answer(config, request)
        if page is not None:
            return page
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")

    def _admit(connection: ServerConnection, request: Request) -> Response | None:
        remote = connection.remote_address
        admission = context.admission
        if admission is None:
            return None
        ip = client_address(
            str(remote[0]) if remote else "",
            request.headers.get("X-Forwarded-For"),
            context.trusted_proxies,
        )
        refusal = admission.refuse_handshake(ip, request.headers.get("Origin"))
        if refusal is None:
            return None
        context.metrics.frame("handshake", f"refused {refusal.status}")
        response = connection.respond(http.HTTPStatus(refusal.status), refusal.reason + "\n")
        if refusal.retry_after_s:
            response.headers["Retry-After"] = refusal.retry_after_header
        return response

    async def handler(connection: ServerConnection) -> None:
        await Session(context, connection).run()

    try:
        server = await serve(
            handler,
            config.host,
            config.port,
            process_request=process_request,
            create_connection=GatewayConnection,
            select_subprotocol=_select_subprotocol,
            # Compression costs ~100 KiB of zlib state per socket, more than a whole idle session.
            compression=None,
            max_size=config.max_frame_bytes,
            open_timeout=10,
            # Keepalive pings come from the gateway's sweep, not from a task per socket; a
            # socket silent for three heartbeat intervals is closed (Session.sweep,
            # Ready.heartbeat_interval_ms).
            ping_interval=None,
            close_timeout=config.close_timeout_s,
            server_header=None,
            ssl=config.tls.server_ssl_context(),
            reuse_port=config.reuse_port or None,
        )
    except OSError as exc:
        if owns_channel:
            await channel.close(None)
        for own in own_channels:
            await own.close(None)
        address = f"{config.host}:{config.port}"
        raise BindError(address, "CHATMESH_WS_PORT", exc.strerror or str(exc)) from exc
    port = server.sockets[0].getsockname()[1]
    scheme = "wss" if config.tls.serving else "ws"
    gateway = Gateway(
        server, context, channel, owns_channel, own_channels, config.host, port, scheme
    )
    log.info("gateway serving %s -> %s", gateway.url, config.chat_target)
    return gateway


class GatewayService:
    """The gateway as a Service: built by `build_gateway_service`, started and stopped by its
    process (`chatmesh serve gateway`, `python -m gateway_ws`, `chatmesh dev`, tests)."""

    name = "gateway_ws"

    def __init__(
        self,
        config: GatewayConfig,
        *,
        chat_channel: grpc.aio.Channel | LocalChannel | None,
        clock: Clock,
    ) -> None:
        self.config = config
        self._chat_channel = chat_channel
        self._clock = clock
        self._gateway: Gateway | None = None
        self._health = Health.STARTING
        self.stop = Shutdown(self._shutdown)

    @property
    def health(self) -> Health:
        return self._health

    @property
    def running(self) -> bool:
        """Started (and not yet stopped): `gateway`, `port` and `url` can be read."""
        return self._gateway is not None and not self._gateway.stopping

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the gateway is not running"
        return self._gateway

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def url(self) -> str:
        return self.gateway.url

    async def start(self) -> None:
        self._gateway = await start_gateway(self.config, self._chat_channel, clock=self._clock)
        self._health = Health.SERVING

    async def _shutdown(self) -> None:
        gateway = self._gateway
        self._health = Health.NOT_SERVING
        if gateway is not None:
            # /healthz answers 503 for the window: load balancers stop sending new sockets.
            gateway.draining = True
            await drain(self.name, self.config.drain_s)
            await gateway.stop()
        self._health = Health.STOPPED


def build_gateway_service(
    config: GatewayConfig,
    *,
    chat_channel: grpc.aio.Channel | LocalChannel | None = None,
    clock: Clock,
) -> GatewayService:
    """The gateway, not started; see `start_gateway` for `chat_channel`."""
    return GatewayService(config, chat_channel=chat_channel, clock=clock)


def service_process(clock: Clock) -> Process:
    """The gateway configured from the environment, for the runner (`chatmesh serve gateway`)."""
    config = GatewayConfig.from_env()
    service = build_gateway_service(config, clock=clock)
    return Process(
        service,
        config.metrics_host,
        config.metrics_port,
        banner=lambda _metrics: f"gateway_ws on {service.url}",
        metrics_setting="CHATMESH_WS_METRICS_PORT",
    )
