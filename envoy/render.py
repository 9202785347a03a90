"""Renders envoy/envoy.yaml.in into an Envoy config: upstream addresses, listener ports,
certificate files, health-check intervals and rate limits filled in.

    python envoy/render.py > envoy.yaml                      # the defaults (envoy/envoy.yaml)
    python envoy/render.py --chat 10.0.0.5:50051 --chat 10.0.0.6:50051 \
        --gateway 10.0.0.7:8080 --tls-cert /etc/envoy/tls/tls.crt \
        --tls-key /etc/envoy/tls/tls.key --plaintext-port 0 -o envoy.yaml

A standalone script on the standard library only (it is not a package: `envoy` is the name of
the module that launches the envoy binary). Tests load it by path and call `render()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "envoy.yaml.in"


@dataclass(frozen=True)
class EdgeSettings:
    """Everything the template leaves open; the defaults are a local `chatmesh serve` setup."""

    chat: Sequence[str] = ("127.0.0.1:50051",)
    presence: Sequence[str] = ("127.0.0.1:50052",)
    search: Sequence[str] = ("127.0.0.1:50054",)
    media: Sequence[str] = ("127.0.0.1:50056",)
    gateway: Sequence[str] = ("127.0.0.1:8080",)
    listen_host: str = "0.0.0.0"
    tls_port: int = 8443
    tls_cert: str = "/etc/envoy/tls/tls.crt"
    tls_key: str = "/etc/envoy/tls/tls.key"
    # 0: no plaintext listener. The default binds loopback only, for local use.
    plaintext_port: int = 8081
    plaintext_host: str = "127.0.0.1"
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901
    connect_timeout_s: float = 1.0
    health_interval_s: float = 5.0
    health_no_traffic_interval_s: float = 10.0
    client_per_second: int = 100
    client_burst: int = 200
    global_burst: int = 10000
    max_clients_tracked: int = 100000
    max_downstream_connections: int = 100000
    cors_origin_regex: str = ".*"
    extra: dict[str, str] = field(default_factory=dict)


def _endpoints(addresses: Sequence[str]) -> str:
    """A YAML flow list of lb_endpoints for `host:port` addresses."""
    if not addresses:
        raise ValueError("a cluster needs at least one host:port")
    items = []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"not host:port: {address!r}")
        socket_address = f"address: {host.strip('[]')}, port_value: {int(port)}"
        items.append("{endpoint: {address: {socket_address: {" + socket_address + "}}}}")
    return "[" + ", ".join(items) + "]"


def _cluster_type(addresses: Sequence[str]) -> str:
    """STATIC when every host is an IP address; STRICT_DNS (resolved again every 5 s, each name
    giving as many hosts as it has addresses) when any is a name."""
    for address in addresses:
        try:
            ipaddress.ip_address(address.rpartition(":")[0].strip("[]"))
        except ValueError:
            return "STRICT_DNS"
    return "STATIC"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _plaintext_listener(settings: EdgeSettings) -> str:
    if not settings.plaintext_port:
        return ""
    return (
        "  # Plaintext, same routes and filters as edge_tls: for local use and for a TLS-\n"
        "  # terminating load balancer in front.\n"
        "  - name: edge_plaintext\n"
        "    address: {socket_address: {address: "
        f"{settings.plaintext_host}, port_value: {settings.plaintext_port}}}}}\n"
        "    per_connection_buffer_limit_bytes: 1048576\n"
        "    filter_chains:\n"
        "    - filters:\n"
        "      - name: envoy.filters.network.http_connection_manager\n"
        "        typed_config: *edge_http\n"
    )


def render(settings: EdgeSettings | None = None) -> str:
    """The Envoy config (YAML) for `settings`."""
    s = settings or EdgeSettings()
    values = {
        "chat_endpoints": _endpoints(s.chat),
        "presence_endpoints": _endpoints(s.presence),
        "search_endpoints": _endpoints(s.search),
        "media_endpoints": _endpoints(s.media),
        "gateway_endpoints": _endpoints(s.gateway),
        "chat_type": _cluster_type(s.chat),
        "presence_type": _cluster_type(s.presence),
        "search_type": _cluster_type(s.search),
        "media_type": _cluster_type(s.media),
        "gateway_type": _cluster_type(s.gateway),
        "listen_host": s.listen_host,
        "tls_port": str(s.tls_port),
        "tls_cert": s.tls_cert,
        "tls_key": s.tls_key,
        "plaintext_listener": _plaintext_listener(s),
        "admin_host": s.admin_host,
        "admin_port": str(s.admin_port),
        "connect_timeout": _seconds(s.connect_timeout_s),
        "health_interval": _seconds(s.health_interval_s),
        "health_no_traffic_interval": _seconds(s.health_no_traffic_interval_s),
        "client_per_second": str(s.client_per_second),
        "client_burst": str(s.client_burst),
        "global_burst": str(s.global_burst),
        "max_clients_tracked": str(s.max_clients_tracked),
        "max_downstream_connections": str(s.max_downstream_connections),
        "cors_origin_regex": s.cors_origin_regex.replace("'", "''"),
        **s.extra,
    }
    return string.Template(TEMPLATE.read_text()).substitute(values)


def _parser() -> argparse.ArgumentParser:
    defaults = EdgeSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("chat", "presence", "search", "media", "gateway"):
        parser.add_argument(
            f"--{name}",
            action="append",
            metavar="HOST:PORT",
            help=f"a {name} replica, repeated for each (default {getattr(defaults, name)[0]})",
        )
    parser.add_argument(
        "--grpc",
        metavar="HOST:PORT",
        help="one server for every gRPC service (`chatmesh dev`); --chat etc. still win",
    )
    for f in dataclasses.fields(EdgeSettings):
        if f.name in {"chat", "presence", "search", "media", "gateway", "extra"}:
            continue
        default = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"default {default}",
        )
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EdgeSettings)
        if f.name not in {"chat", "presence", "search", "media", "gateway", "extra"}
    }
    for name in ("chat", "presence", "search", "media", "gateway"):
        given = getattr(args, name)
        if given:
            options[name] = tuple(given)
        elif args.grpc and name != "gateway":
            options[name] = (args.grpc,)
    text = render(EdgeSettings(**options))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
