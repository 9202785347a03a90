"""`chatmesh dev`: every service on the embedded backends, from one command.

chat_service and presence_service share one gRPC port (so grpcurl sees both) and one in-process
bus; the gateway and presence's access checks call the servicers through a LocalChannel (no HTTP/2
hop). Each service is made by its own builder; this module only chooses the embedded backends and
wires the services together. `CHATMESH_MODE=cluster` makes it refuse to start, as the services'
configs refuse the embedded backends in that mode.

Two processes use the machine's two cores (CHATMESH_DEV_CONSUMERS=process, the default): this one
serves every gRPC service and the WebSocket, and is the one writer of chat's store and the
appender of the durable log; a worker it supervises (`dev_consumers`) runs the log's consumers,
search's indexer and notify's consumer and delivery, which write the search index and the push
queue. SearchService and NotifyService stay on dev's port, over the same SQLite files.
`inline` runs the consumers on this process's event loop instead (one process, as before).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc

from chat_service.attachments import GrpcAttachments, chat_credential
from chat_service.config import ChatConfig
from chat_service.server import build_chat_service
from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
from chatmesh_common.clock import Clock
from chatmesh_common.local_channel import LocalChannel
from chatmesh_common.runner import Process
from chatmesh_common.service import GrpcService, Health
from chatmesh_common.settings import ConfigError, read_env, read_one
from gateway_ws.config import GatewayConfig
from gateway_ws.server import GatewayService, build_gateway_service
from media_service.access import GrpcMediaAccess, media_credential
from media_service.config import MediaConfig
from media_service.server import MediaComponent, build_media_service
from notify_service.access import GrpcNotifyAccess, notify_credential
from notify_service.config import NotifyConfig
from notify_service.providers.base import Platform, PushProvider
from notify_service.server import build_notify_service
from presence_service.access import GrpcAccessClient, presence_credential
from presence_service.config import PresenceConfig
from presence_service.server import build_presence_service
from search_service.access import GrpcSearchAccess, search_credential
from search_service.config import SearchConfig
from search_service.server import build_search_service

from .dev_consumers import READY
from .dev_gateway import READY as GATEWAY_READY
from .dev_secrets import dev_secret
from .dev_settings import DevConfig, split_hostport
from .supervisor import SupervisedChild, child_argv

__all__ = ["DevConfig", "DevOptions", "DevSystem", "dev_process", "split_hostport"]


@dataclass(frozen=True)
class DevOptions:
    """The command line of `chatmesh dev`; None takes the setting from the environment."""

    data_dir: str | None = None
    grpc: str | None = None
    ws: str | None = None
    metrics: str | None = None


class DevSystem:
    """chat + presence on one gRPC server, the gateway in front, one bus: a Service. With
    `consumers` (a supervised worker process) search and notify serve RPCs only here."""

    name = "chatmesh dev"

    def __init__(
        self,
        chat_config: ChatConfig,
        presence_config: PresenceConfig,
        gateway_config: GatewayConfig,
        clock: Clock,
        search_config: SearchConfig | None = None,
        notify_config: NotifyConfig | None = None,
        push_providers: Mapping[Platform, PushProvider] | None = None,
        media_config: MediaConfig | None = None,
        consumers: SupervisedChild | None = None,
        gateways: Sequence[SupervisedChild] = (),
    ) -> None:
        self.chat_config = chat_config
        self.consumers = consumers
        self.gateways = list(gateways)
        if self.gateways:
            # Dev's gateway binds first; the extra ones share its port.
            gateway_config = dataclasses.replace(gateway_config, reuse_port=True)
        consume_here = consumers is None
        self._gateway_config = gateway_config
        self._clock = clock
        # The durable log lives in the data dir, so consumers resume after a restart.
        self.bus = InProcessBus(Path(chat_config.data_dir) / DURABLE_LOG_FILE, clock)
        # chat checks attachments with media over the LocalChannel, given once it exists.
        self._attachments: GrpcAttachments | None = None
        if media_config is not None:
            self._attachments = GrpcAttachments(chat_credential(media_config.service_secret))
        self.chat = build_chat_service(
            chat_config, bus=self.bus, attachments=self._attachments, clock=clock
        )
        # Its channel is the LocalChannel, known once the servicers exist.
        self._access = GrpcAccessClient(presence_credential(presence_config.service_secret))
        self.presence = build_presence_service(
            presence_config, bus=self.bus, access=self._access, clock=clock
        )
        components = [*self.chat.components, *self.presence.components]
        # Search indexes the shared durable log and asks AccessService over the LocalChannel.
        self._search_access: GrpcSearchAccess | None = None
        if search_config is not None:
            self._search_access = GrpcSearchAccess(search_credential(search_config.service_secret))
            search = build_search_service(
                search_config,
                bus=self.bus,
                access=self._search_access,
                clock=clock,
                consume=consume_here,
            )
            components += search.components
        # Push reads the same durable log and asks chat and presence over the LocalChannel.
        self._notify_access: GrpcNotifyAccess | None = None
        if notify_config is not None:
            self._notify_access = GrpcNotifyAccess(notify_credential(notify_config.service_secret))
            notify = build_notify_service(
                notify_config,
                providers=push_providers,
                bus=self.bus,
                access=self._notify_access,
                clock=clock,
                consume=consume_here,
            )
            components += notify.components
        self._media_access: GrpcMediaAccess | None = None
        self.media: MediaComponent | None = None
        if media_config is not None:
            self._media_access = GrpcMediaAccess(media_credential(media_config.service_secret))
            media = build_media_service(
                media_config, bus=self.bus, access=self._media_access, clock=clock
            )
            self.media = media.component
            components += media.components
        # One server on chat's settings (bind, grace, and the drain that dev_process chose).
        self.grpc = GrpcService(self.name, components, chat_config)
        self._channel: LocalChannel | None = None
        self._gateway: GatewayService | None = None

    @property
    def health(self) -> Health:
        return self.grpc.health

    @property
    def gateway(self) -> GatewayService:
        assert self._gateway is not None, "chatmesh dev is not running"
        return self._gateway

    async def start(self) -> None:
        await self.grpc.start()
        self._channel = channel = LocalChannel(self.grpc.registrations)
        self._access.set_channel(cast(grpc.aio.Channel, channel))
        for client in (self._search_access, self._media_access, self._attachments):
            if client is not None:
                client.set_channel(cast(grpc.aio.Channel, channel))
        if self._notify_access is not None:
            local = cast(grpc.aio.Channel, channel)
            self._notify_access.set_channels(local, local)
        host, _port = split_hostport(self.chat_config.grpc_bind, "CHATMESH_GRPC_BIND")
        target = f"{host}:{self.grpc.port}"
        config = dataclasses.replace(
            self._gateway_config, chat_target=target, presence_target=target
        )
        self._gateway = build_gateway_service(config, chat_channel=channel, clock=self._clock)
        try:
            await self._gateway.start()
        except BaseException:
            await self.grpc.stop()
            raise
        if self.media is not None and config.web_client:
            # The web client uploads from the gateway's origin, known now it is bound.
            self.media.allow_origins(self.web_origins())
        children = [*self.gateways, *([self.consumers] if self.consumers is not None else [])]
        for child in self.gateways:
            child.set_env(CHATMESH_WS_PORT=str(self._gateway.port))
        started: list[SupervisedChild] = []
        try:
            for child in children:
                # They ask chat and presence on the port that now serves.
                child.set_env(CHATMESH_CHAT_TARGET=target, CHATMESH_PRESENCE_TARGET=target)
                await child.start()
                started.append(child)
        except BaseException:
            for child in started:
                await child.stop()
            await self._gateway.stop()
            await self.grpc.stop()
            raise

    def web_origins(self) -> set[str]:
        """The origins the web client is served from (the gateway's port)."""
        if self._gateway is None or not self._gateway.running:
            return set()
        port = self._gateway.port
        hosts = {self._gateway_config.host, "127.0.0.1", "localhost"}
        return {f"http://{host}:{port}" for host in hosts}

    async def stop(self) -> None:
        # First: the children's calls to chat end before chat stops.
        for child in self.gateways:
            await child.stop()
        if self.consumers is not None:
            await self.consumers.stop()
        if self._gateway is not None:
            await self._gateway.stop()
        await self.grpc.stop()
        if self._channel is not None:
            await self._channel.close()
        await self.bus.close()


def worker_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The consumer worker's environment: dev's settings, this interpreter's import path, and
    no other CHATMESH_ variable of the shell (dev's own choices win)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    return {**base, **settings, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def consumers_line(consumers: SupervisedChild) -> str:
    """The banner's line of the worker: its pid and Prometheus endpoint."""
    metrics = consumers.ready_line.removeprefix("metrics=")
    host, _port = split_hostport(
        consumers.env.get("CHATMESH_DEV_CONSUMERS_METRICS_BIND", "127.0.0.1:0"), "metrics"
    )
    endpoint = f", metrics http://{host}:{metrics}/metrics" if metrics not in ("", "0") else ""
    return f"  consumers  pid {consumers.pid} (search indexer, push){endpoint}\n"


def dev_process(options: DevOptions, clock: Clock, env: Mapping[str, str] | None = None) -> Process:
    """The dev composition from the command line and the environment, for the runner."""
    source = dict(os.environ if env is None else env)
    if read_one(ChatConfig, "mode", source) == "cluster":
        raise ConfigError(
            "chatmesh dev runs the embedded backends, which CHATMESH_MODE=cluster refuses;"
            " unset it, or run each service with `chatmesh serve`"
        )
    dev = read_env(DevConfig, source)
    data_dir = Path(options.data_dir or read_one(ChatConfig, "data_dir", source))
    grpc_bind = options.grpc or read_one(ChatConfig, "grpc_bind", source)
    grpc_host, grpc_port = split_hostport(grpc_bind, "--grpc")
    ws_host, ws_port = split_hostport(options.ws or dev.ws_bind, "--ws")
    metrics_host, metrics_port = split_hostport(options.metrics or dev.metrics_bind, "--metrics")
    embedded = {
        **source,
        "CHATMESH_JWT_SECRET": dev_secret(data_dir, source),
        "CHATMESH_SERVICE_SECRET": dev_secret(
            data_dir, source, "CHATMESH_SERVICE_SECRET", "service-secret"
        ),
        "CHATMESH_DATA_DIR": str(data_dir),
        "CHATMESH_GRPC_BIND": f"{grpc_host}:{grpc_port}",
        "CHATMESH_WS_HOST": ws_host,
        "CHATMESH_WS_PORT": str(ws_port),
        "CHATMESH_DRAIN_S": str(dev.drain_s),
        "CHATMESH_STORE": source.get("CHATMESH_STORE") or "sqlite",
        "CHATMESH_BUS": source.get("CHATMESH_BUS") or "inprocess",
        "CHATMESH_PRESENCE_BACKEND": source.get("CHATMESH_PRESENCE_BACKEND") or "memory",
        # The web client at http://<ws host:port>/, signing in with tokens dev mints.
        "CHATMESH_WS_WEB_CLIENT": source.get("CHATMESH_WS_WEB_CLIENT") or "true",
        "CHATMESH_WS_DEV_TOKENS": source.get("CHATMESH_WS_DEV_TOKENS") or "true",
    }
    for name, value in (
        ("CHATMESH_STORE", "sqlite"),
        ("CHATMESH_BUS", "inprocess"),
        ("CHATMESH_PRESENCE_BACKEND", "memory"),
    ):
        if embedded[name] != value:
            raise ConfigError(f"chatmesh dev runs embedded: {name} must be {value!r} or unset")
    data_dir.mkdir(parents=True, exist_ok=True)
    media_env = {
        "CHATMESH_MEDIA_RECORDS": str(data_dir / "media.db"),
        "CHATMESH_MEDIA_DIR": str(data_dir / "media"),
        **embedded,
    }
    if not source.get("CHATMESH_MEDIA_HTTP_BIND"):
        # Apps learn the media URLs from create_upload and get_download_url, so in dev the URL
        # server takes any free port (shown in the banner) rather than one that may be taken.
        media_env["CHATMESH_MEDIA_HTTP_BIND"] = f"{grpc_host}:0"
    search_env = {"CHATMESH_SEARCH_INDEX": str(data_dir / "search.db"), **embedded}
    notify_env = {"CHATMESH_NOTIFY_DB": str(data_dir / "notify.db"), **embedded}
    consumers = None
    if dev.consumers == "process":
        consumers = SupervisedChild(
            "dev consumers",
            child_argv(f"{__package__}.dev_consumers"),
            worker_env({**search_env, **notify_env}),
            READY,
        )
    gateway_env = worker_env(
        {**embedded, "CHATMESH_WS_REUSE_PORT": "true", "CHATMESH_WS_METRICS_PORT": "-1"}
    )
    gateways = [
        SupervisedChild(
            f"dev gateway {i + 1}",
            child_argv(f"{__package__}.dev_gateway"),
            gateway_env,
            GATEWAY_READY,
        )
        for i in range(dev.gateways)
    ]
    system = DevSystem(
        ChatConfig.from_env(embedded),
        PresenceConfig.from_env(embedded),
        GatewayConfig.from_env(embedded),
        clock,
        SearchConfig.from_env(search_env),
        media_config=MediaConfig.from_env(media_env),
        notify_config=NotifyConfig.from_env(notify_env),
        consumers=consumers,
        gateways=gateways,
    )

    def banner(bound_metrics: int) -> str:
        grpc_at = f"{grpc_host}:{system.grpc.port}"
        return (
            "chatmesh dev is running (embedded: SQLite + in-process bus)\n"
            f"  data       {data_dir.resolve()}\n"
            f"  gRPC       {grpc_at}   (grpcurl -plaintext {grpc_at} list)\n"
            f"  WebSocket  {system.gateway.url}\n"
            + (
                f"  web client http://{ws_host}:{system.gateway.port}/\n"
                if system.gateway.config.web_client
                else ""
            )
            + (
                f"  media URLs http://{grpc_host}:{system.media.http_port}\n"
                if system.media is not None and system.media.http_port
                else ""
            )
            + f"  metrics    http://{metrics_host}:{bound_metrics}/metrics\n"
            + (consumers_line(consumers) if consumers is not None else "")
            + (
                f"  gateways   {len(gateways)} more on the WebSocket port"
                f" (pids {', '.join(str(g.pid) for g in gateways)})\n"
                if gateways
                else ""
            )
            + f"  token      chatmesh token alice --data-dir {data_dir}\n"
            "Ctrl-C stops it."
        )

    return Process(system, metrics_host, metrics_port, banner, "CHATMESH_METRICS_BIND")
