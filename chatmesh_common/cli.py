"""The `chatmesh` command: run the whole system, run one service, or mint a token.

chatmesh dev [--data-dir D] [--grpc HOST:PORT] [--ws HOST:PORT] [--metrics HOST:PORT]
chatmesh serve chat|presence|gateway (settings from the environment)
chatmesh token USER [--device D] [--ttl S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from chatmesh_common.auth import issue_token
from chatmesh_common.logs import configure_logging
from chatmesh_common.settings import env_int

log = logging.getLogger("chatmesh")

DEFAULT_DATA_DIR = "./chatmesh-data"


def _split_hostport(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"{flag} must be HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _dev_secret(
    data_dir: Path, env_name: str = "CHATMESH_JWT_SECRET", name: str = "jwt-secret"
) -> str:
    """The configured secret, else one kept in the data dir so `chatmesh token` agrees with dev."""
    configured = os.environ.get(env_name, "")
    if configured:
        return configured
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


async def _run_until_signalled(stop: Callable[[], Awaitable[None]]) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await stop()


async def _dev(args: argparse.Namespace) -> None:
    from typing import cast

    import grpc

    from chat_service.config import ChatConfig
    from chat_service.server import SERVICE_NAMES, build_components, build_store
    from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
    from chatmesh_common.grpc_server import start_grpc_server
    from chatmesh_common.local_channel import LocalChannel
    from chatmesh_common.metrics import serve_metrics
    from gateway_ws.config import GatewayConfig
    from gateway_ws.server import start_gateway
    from presence_service.access import GrpcAccessClient, presence_credential
    from presence_service.backends.memory import MemoryPresenceBackend
    from presence_service.config import PresenceConfig
    from presence_service.server import SERVICE_NAMES as PRESENCE_NAMES
    from presence_service.server import build_presence
    from presence_service.server import build_registrations as presence_registrations

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = _dev_secret(data_dir)
    service_secret = _dev_secret(data_dir, "CHATMESH_SERVICE_SECRET", "service-secret")
    grpc_host, grpc_port = _split_hostport(args.grpc, "--grpc")
    ws_host, ws_port = _split_hostport(args.ws, "--ws")
    metrics_host, metrics_port = _split_hostport(args.metrics, "--metrics")

    env = os.environ
    chat_config = ChatConfig(
        jwt_secret=secret,
        service_secret=service_secret,
        data_dir=str(data_dir),
        grpc_bind=f"{grpc_host}:{grpc_port}",
        # Retention applies in dev too when asked for; unset, everything is kept.
        retention_direct_days=env_int(env, "CHATMESH_RETENTION_DIRECT_DAYS", 0),
        retention_group_days=env_int(env, "CHATMESH_RETENTION_GROUP_DAYS", 0),
        retention_channel_days=env_int(env, "CHATMESH_RETENTION_CHANNEL_DAYS", 0),
    )
    store = build_store(chat_config)
    await store.open()
    # Embedded: the in-process bus, whatever CHATMESH_BUS says (no NATS to run); its durable
    # log lives in the data dir, so consumers resume where they stopped after a restart.
    bus = InProcessBus(data_dir / DURABLE_LOG_FILE)
    components = build_components(chat_config, store, bus)
    await components.start()
    # Presence shares the one gRPC port; it asks chat_service (AccessService) on that same port.
    presence_config = PresenceConfig(
        jwt_secret=secret, service_secret=service_secret, grpc_bind=chat_config.grpc_bind
    )
    access = GrpcAccessClient(presence_credential(service_secret))
    presence = build_presence(presence_config, MemoryPresenceBackend(), bus, access)
    registrations = [*components.registrations, *presence_registrations(presence_config, presence)]
    # The gRPC port serves grpcurl and outside clients; in-process callers (the gateway and
    # presence's access checks) call the same servicers through a LocalChannel, no HTTP/2 hop.
    grpc_server = await start_grpc_server(
        chat_config.grpc_bind, registrations, [*SERVICE_NAMES, *PRESENCE_NAMES]
    )
    channel = LocalChannel(registrations)
    access.set_channel(cast(grpc.aio.Channel, channel))
    presence.start()
    gateway_config = GatewayConfig(
        jwt_secret=secret,
        host=ws_host,
        port=ws_port,
        chat_target=f"{grpc_host}:{grpc_server.port}",
        presence_target=f"{grpc_host}:{grpc_server.port}",
    )
    gateway = await start_gateway(gateway_config, chat_channel=channel)
    bound_metrics = serve_metrics(metrics_host, metrics_port)

    print(
        "chatmesh dev is running (embedded: SQLite + in-process bus)\n"
        f"  data       {data_dir.resolve()}\n"
        f"  gRPC       {grpc_host}:{grpc_server.port}   (grpcurl -plaintext {grpc_host}:"
        f"{grpc_server.port} list)\n"
        f"  WebSocket  ws://{ws_host}:{gateway.port}/v1/ws\n"
        f"  metrics    http://{metrics_host}:{bound_metrics}/metrics\n"
        f"  token      chatmesh token alice --data-dir {args.data_dir}\n"
        "Ctrl-C stops it.",
        flush=True,
    )

    async def stop() -> None:
        await gateway.stop()
        # Watch streams never end by themselves: end them before the drain waits on them.
        await presence.stop()
        await grpc_server.stop(chat_config.shutdown_grace_s)
        await channel.close()
        await components.stop()
        await bus.close()
        await store.close()

    await _run_until_signalled(stop)


async def _serve(args: argparse.Namespace) -> None:
    from chatmesh_common.metrics import serve_metrics

    if args.service == "chat":
        from chat_service.config import ChatConfig, ConfigError
        from chat_service.server import start_chat_server

        try:
            config = ChatConfig.from_env()
        except ConfigError as exc:
            raise SystemExit(f"chat_service: {exc}") from exc
        server = await start_chat_server(config)
        serve_metrics(config.metrics_host, config.metrics_port)
        print(f"chat_service gRPC on port {server.port}", flush=True)
        await _run_until_signalled(server.stop)
    elif args.service == "presence":
        from presence_service.config import ConfigError as PresenceConfigError
        from presence_service.config import PresenceConfig
        from presence_service.server import start_presence_server

        try:
            presence_config = PresenceConfig.from_env()
        except PresenceConfigError as exc:
            raise SystemExit(f"presence_service: {exc}") from exc
        presence_server = await start_presence_server(presence_config)
        serve_metrics(presence_config.metrics_host, presence_config.metrics_port)
        print(f"presence_service gRPC on port {presence_server.port}", flush=True)
        await _run_until_signalled(presence_server.stop)
    elif args.service == "gateway":
        from gateway_ws.config import GatewayConfig
        from gateway_ws.server import start_gateway

        try:
            gateway_config = GatewayConfig.from_env()
        except ValueError as exc:
            raise SystemExit(f"gateway_ws: {exc}") from exc
        gateway = await start_gateway(gateway_config)
        print(f"gateway_ws on ws://{gateway.host}:{gateway.port}/v1/ws", flush=True)
        await _run_until_signalled(gateway.stop)
    else:
        raise SystemExit(f"unknown service {args.service!r}")


async def _migrate() -> None:
    """Applies the store's schema migrations; safe to run twice or from two processes at once."""
    from chat_service.config import ChatConfig, ConfigError
    from chat_service.server import build_store

    try:
        config = ChatConfig.from_env()
    except ConfigError as exc:
        raise SystemExit(f"migrate: {exc}") from exc
    if config.scylla is not None:
        store = config.scylla.build_store(migrate_on_open=True)
        where = f"keyspace {config.scylla.keyspace}"
    else:
        store = build_store(config)  # SQLite creates and upgrades its schema when opened
        where = f"{config.data_dir}"
    await store.open()
    await store.close()
    print(f"schema of the {config.store} store is up to date ({where})", flush=True)


def _token(args: argparse.Namespace) -> None:
    secret = _dev_secret(Path(args.data_dir))
    print(issue_token(secret, args.user, args.device, args.ttl))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatmesh", description="chatmesh chat backend")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run every service in one process (embedded)")
    dev.add_argument("--data-dir", default=os.environ.get("CHATMESH_DATA_DIR", DEFAULT_DATA_DIR))
    dev.add_argument("--grpc", default=os.environ.get("CHATMESH_GRPC_BIND", "127.0.0.1:50051"))
    dev.add_argument("--ws", default=os.environ.get("CHATMESH_WS_BIND", "127.0.0.1:8080"))
    dev.add_argument("--metrics", default=os.environ.get("CHATMESH_METRICS_BIND", "127.0.0.1:9100"))

    serve = commands.add_parser("serve", help="run one service, configured from the environment")
    serve.add_argument("service", choices=["chat", "presence", "gateway"])

    commands.add_parser(
        "migrate", help="apply the store's schema migrations (settings from the environment)"
    )

    token = commands.add_parser("token", help="print a token signed with the configured secret")
    token.add_argument("user")
    token.add_argument("--device", default="default")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds (default one day)")
    token.add_argument(
        "--data-dir",
        default=os.environ.get("CHATMESH_DATA_DIR", DEFAULT_DATA_DIR),
        help="where `chatmesh dev` keeps its secret when CHATMESH_JWT_SECRET is unset",
    )
    return parser


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    args = _parser().parse_args(argv)
    if args.command == "token":
        _token(args)
    elif args.command == "dev":
        _run(lambda: _dev(args))
    elif args.command == "migrate":
        _run(_migrate)
    elif args.command == "serve":
        _run(lambda: _serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
