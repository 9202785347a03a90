"""The `chatmesh` command.

chatmesh dev [--data-dir D] [--grpc HOST:PORT] [--ws HOST:PORT] [--metrics HOST:PORT]
chatmesh serve chat|presence|gateway (settings from the environment)
chatmesh migrate (the store's schema, settings from the environment)
chatmesh token USER [--device D] [--ttl S] [--data-dir D]
chatmesh config [--markdown] (every setting: current value, default, meaning)
chatmesh search reindex [--conversation C] [--limit N] [--restart] [--data-dir D]
chatmesh tail USER [--target HOST:PORT] [--conversation C] [--since SEQ] [--data-dir D]
chatmesh chat USER [--url WS_URL] [--history N] [--data-dir D]
chatmesh cluster up|down|status [--dir D] (a local cluster of real processes behind Envoy)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from chatmesh_common.auth import issue_service_token, issue_token
from chatmesh_common.limits import LIMITS
from chatmesh_common.runner import CONFIG_ERROR_EXIT, run_service, run_task
from chatmesh_common.settings import ConfigError, read_one

from .cluster import command as cluster_command
from .dev_secrets import dev_secret
from .serve import SERVICES, serve
from .terminal import run_command

# `.dev` and `.settings_doc` import every service: only the commands that need them do, so
# `chatmesh token` and `--help` start quickly.


async def _migrate() -> None:
    """Applies the store's schema migrations; safe to run twice or from two processes at once."""
    from chat_service.config import ChatConfig
    from chat_service.server import build_store

    config = ChatConfig.from_env()
    if config.scylla is not None:
        store = config.scylla.build_store(migrate_on_open=True)
        where = f"keyspace {config.scylla.keyspace}"
    else:
        store = build_store(config)  # SQLite creates and upgrades its schema when opened
        where = f"{config.data_dir}"
    await store.open()
    await store.close()
    print(f"schema of the {config.store} store is up to date ({where})", flush=True)


def _token(args: argparse.Namespace) -> int:
    """Prints a user token; says on stderr which secret signed it."""
    from chat_service.config import ChatConfig

    problem = ""
    if not args.user.strip():
        problem = "USER must not be empty"
    elif len(args.user) > LIMITS.max_id_chars or len(args.device) > LIMITS.max_id_chars:
        problem = f"USER and --device must be at most {LIMITS.max_id_chars} chars"
    elif not args.device.strip():
        problem = "--device must not be empty"
    elif args.ttl <= 0:
        problem = f"--ttl must be a positive number of seconds, got {args.ttl}"
    if problem:
        print(f"chatmesh: token: {problem}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    data_dir = Path(args.data_dir or read_one(ChatConfig, "data_dir"))
    # With --scope: a service token (an operator's, e.g. scope notify.admin for dead letters).
    variable, file_name = (
        ("CHATMESH_SERVICE_SECRET", "service-secret")
        if args.scope
        else ("CHATMESH_JWT_SECRET", "jwt-secret")
    )
    try:
        secret = dev_secret(data_dir, None, variable, file_name, create=False)
    except ConfigError as exc:
        print(f"chatmesh: token: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    source = variable if os.environ.get(variable) else data_dir / file_name
    print(f"signed with {source}", file=sys.stderr)
    if args.scope:
        print(issue_service_token(secret, args.user, args.scope, args.ttl))
    else:
        print(issue_token(secret, args.user, args.device, args.ttl))
    return 0


def _reindex(args: argparse.Namespace) -> int:
    """Rebuilds the search index from the durable log; a rerun continues an interrupted one."""
    from chat_service.config import ChatConfig
    from search_service.reindex import reindex_from_env

    if args.limit is not None and args.limit <= 0:
        print(
            f"chatmesh: search reindex: --limit must be positive, got {args.limit}", file=sys.stderr
        )
        return CONFIG_ERROR_EXIT

    async def main() -> None:
        # chat_service's data dir holds the embedded durable log.
        await reindex_from_env(
            args.data_dir or str(read_one(ChatConfig, "data_dir")),
            conversation_id=args.conversation or "",
            limit=args.limit,
            restart=args.restart,
        )

    return run_task("search reindex", main)


def _tail(args: argparse.Namespace) -> int:
    """Prints USER's events as JSON lines until Ctrl-C."""
    from chatmesh_common.tls import TlsSettings
    from gateway_ws.config import GatewayConfig

    from .local_token import mint_user_token
    from .tail import TailOptions, tail

    async def main() -> None:
        if args.since is not None and args.since < 0:
            raise ConfigError(f"--since must be a seq (0 or more), got {args.since}")
        mint_user_token(args.user, args.device, args.data_dir)  # refuses before connecting
        options = TailOptions(
            user=args.user,
            target=args.target or read_one(GatewayConfig, "chat_target"),
            token=lambda: mint_user_token(args.user, args.device, args.data_dir),
            device=args.device,
            conversations=args.conversation or (),
            since=args.since,
            tls=TlsSettings.from_env(os.environ),
        )
        await tail(options)

    return run_command("tail", main)


def _chat(args: argparse.Namespace) -> int:
    """The terminal chat client until /quit, Ctrl-D or Ctrl-C."""
    from .chat_client import ChatOptions, chat
    from .local_token import mint_user_token

    async def main() -> None:
        if not 1 <= args.history <= LIMITS.max_page:
            raise ConfigError(
                f"--history must be 1 to {LIMITS.max_page} messages, got {args.history}"
            )
        from .dev import DevConfig

        url = args.url or f"ws://{read_one(DevConfig, 'ws_bind')}/v1/ws"
        token = mint_user_token(args.user, args.device, args.data_dir)
        await chat(ChatOptions(args.user, url, token, args.history))

    return run_command("chat", main)


def _version() -> str:
    try:
        return version("chatmesh")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatmesh", description="chatmesh chat backend")
    parser.add_argument("--version", action="version", version=f"chatmesh {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run every service in one process (embedded)")
    dev.add_argument("--data-dir", help="default: CHATMESH_DATA_DIR or ./chatmesh-data")
    dev.add_argument("--grpc", help="HOST:PORT, default: CHATMESH_GRPC_BIND or 127.0.0.1:50051")
    dev.add_argument("--ws", help="HOST:PORT, default: CHATMESH_WS_BIND or 127.0.0.1:8080")
    dev.add_argument(
        "--metrics", help="HOST:PORT, default: CHATMESH_METRICS_BIND or 127.0.0.1:9100"
    )

    serve_cmd = commands.add_parser(
        "serve", help="run one service, configured from the environment"
    )
    serve_cmd.add_argument("service", choices=sorted(SERVICES))

    commands.add_parser(
        "migrate", help="apply the store's schema migrations (settings from the environment)"
    )

    token = commands.add_parser("token", help="print a token signed with the configured secret")
    token.add_argument("user")
    token.add_argument("--device", default="default", help="device id (default: default)")
    token.add_argument(
        "--ttl", type=int, default=24 * 3600, help="seconds, positive (default: 86400, one day)"
    )
    token.add_argument(
        "--data-dir",
        help="where `chatmesh dev` keeps its secret when CHATMESH_JWT_SECRET is unset",
    )
    token.add_argument(
        "--scope",
        action="append",
        help="a service token for USER with this scope (repeatable), signed with the service"
        " secret, e.g. notify.admin or chat.moderate",
    )

    search = commands.add_parser("search", help="search index maintenance")
    search_commands = search.add_subparsers(dest="search_command", required=True)
    reindex = search_commands.add_parser(
        "reindex",
        help="rebuild the search index from the durable log (resumes an interrupted rebuild)",
    )
    reindex.add_argument("--conversation", help="only this conversation's messages")
    reindex.add_argument(
        "--limit", type=int, help="stop after about N messages (a rerun continues from there)"
    )
    reindex.add_argument(
        "--restart", action="store_true", help="drop an unfinished rebuild's position first"
    )
    reindex.add_argument(
        "--data-dir",
        help="embedded: the data dir holding the durable log (default: CHATMESH_DATA_DIR or"
        " ./chatmesh-data); the index is CHATMESH_SEARCH_INDEX or search.db in it",
    )

    data_dir_help = (
        "where `chatmesh dev` keeps its token secret, used when CHATMESH_JWT_SECRET is unset"
        " (default: CHATMESH_DATA_DIR or ./chatmesh-data)"
    )
    tail_cmd = commands.add_parser(
        "tail", help="print a user's events as JSON lines (debugging), until Ctrl-C"
    )
    tail_cmd.add_argument("user")
    tail_cmd.add_argument(
        "--target",
        help="chat_service's gRPC HOST:PORT, default: CHATMESH_CHAT_TARGET or 127.0.0.1:50051",
    )
    tail_cmd.add_argument(
        "--conversation", action="append", help="only this conversation's events (repeatable)"
    )
    tail_cmd.add_argument(
        "--since",
        type=int,
        metavar="SEQ",
        help="first replay the events after SEQ (of the --conversations, else of every"
        " conversation of USER); 0 replays from the start",
    )
    tail_cmd.add_argument("--device", default="tail", help="device id (default: tail)")
    tail_cmd.add_argument("--data-dir", help=data_dir_help)

    chat_cmd = commands.add_parser(
        "chat", help="a small terminal chat client over the WebSocket edge"
    )
    chat_cmd.add_argument("user")
    chat_cmd.add_argument(
        "--url",
        help="the gateway's WebSocket URL, default: ws://CHATMESH_WS_BIND/v1/ws or"
        " ws://127.0.0.1:8080/v1/ws",
    )
    chat_cmd.add_argument(
        "--history", type=int, default=20, help="messages shown on /open (default: 20)"
    )
    chat_cmd.add_argument("--device", default="chat", help="device id (default: chat)")
    chat_cmd.add_argument("--data-dir", help=data_dir_help)

    cluster_command.add_parser(commands)

    config = commands.add_parser(
        "config", help="list every setting: current value, default and meaning"
    )
    config.add_argument(
        "--markdown", action="store_true", help="the reference table of docs/settings.md"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "token":
        code = _token(args)
    elif args.command == "config":
        from .settings_doc import render_markdown, render_text

        sys.stdout.write(render_markdown() if args.markdown else render_text())
        code = 0
    elif args.command == "dev":
        from .dev import DevOptions, dev_process

        options = DevOptions(args.data_dir, args.grpc, args.ws, args.metrics)
        code = run_service("dev", lambda clock: dev_process(options, clock))
    elif args.command == "migrate":
        code = run_task("migrate", _migrate)
    elif args.command == "tail":
        code = _tail(args)
    elif args.command == "chat":
        code = _chat(args)
    elif args.command == "search":
        code = _reindex(args)
    elif args.command == "cluster":
        code = cluster_command.run(args)
    else:
        code = serve(args.service)
    sys.exit(code)


if __name__ == "__main__":
    main()
