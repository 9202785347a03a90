"""The Envoy config the chart renders: every public gRPC service of protos/ routed by its path
prefix to the component serving it, /v1/ws upgraded to the gateways, and (with a real Envoy)
accepted by `envoy --mode validate`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.helm.chart import (
    NAMESPACE,
    REPO,
    VALUE_SETS,
    Doc,
    fullname,
    named,
    of_kind,
    render,
)
from tests.servers.binaries import require_binary

pytestmark = pytest.mark.helm

# The component serving each proto package; AccessService is service-to-service only.
SERVED_BY = {
    "chatmesh.chat.v1": "chat",
    "chatmesh.events.v1": "chat",
    "chatmesh.presence.v1": "presence",
    "chatmesh.search.v1": "search",
    "chatmesh.media.v1": "media",
    "chatmesh.notify.v1": "notify",
    "chatmesh.moderation.v1": "chat",
}
INTERNAL = {"chatmesh.chat.v1.AccessService", "chatmesh.moderation.v1.ModerationService"}


def proto_services() -> dict[str, str]:
    """Full name of every gRPC service in protos/ -> its package."""
    services: dict[str, str] = {}
    for proto in sorted((REPO / "protos").rglob("*.proto")):
        text = proto.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M)
        assert package, proto
        for name in re.findall(r"^service (\w+)", text, re.M):
            services[f"{package.group(1)}.{name}"] = package.group(1)
    return services


def envoy_config(values: str) -> dict[str, Any]:
    config_map = named(render(values), "ConfigMap", f"{fullname()}-envoy")
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["envoy.yaml"])
    return config


def routes(config: dict[str, Any]) -> list[Doc]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    (host,) = manager["typed_config"]["route_config"]["virtual_hosts"]
    found: list[Doc] = host["routes"]
    return found


def test_every_public_grpc_service_is_routed_to_its_component() -> None:
    services = proto_services()
    assert set(services.values()) <= set(SERVED_BY), "a new proto package: say who serves it"
    by_prefix = {
        route["match"]["prefix"]: route
        for route in routes(envoy_config("defaults"))
        if "prefix" in route["match"]
    }
    for service, package in services.items():
        prefix = f"/{service}/"
        if service in INTERNAL:
            assert prefix not in by_prefix, f"{service} is internal"
            continue
        route = by_prefix[prefix]
        assert route["match"]["grpc"] == {}
        assert route["route"]["cluster"] == SERVED_BY[package]
        # Event streams live long: no route timeout.
        assert route["route"]["timeout"] == "0s"


def test_websocket_goes_to_the_gateways() -> None:
    config = envoy_config("defaults")
    (ws,) = [route for route in routes(config) if route["match"].get("path") == "/v1/ws"]
    assert ws["route"]["cluster"] == "gateway"
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert {"upgrade_type": "websocket"} in manager["upgrade_configs"]


def test_clusters_are_the_headless_services() -> None:
    docs = render("defaults")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for cluster in envoy_config("defaults")["static_resources"]["clusters"]:
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        name, namespace, _svc = address["address"].split(".")
        assert namespace == NAMESPACE
        service = services[name]
        assert service["spec"]["clusterIP"] == "None"
        assert address["port_value"] in {p["port"] for p in service["spec"]["ports"]}
        (check,) = cluster["health_checks"]
        if cluster["name"] == "gateway":
            assert check["http_health_check"]["path"] == "/healthz"
        else:
            assert "grpc_health_check" in check
            options = cluster["typed_extension_protocol_options"]
            assert "http2_protocol_options" in str(options)


def test_disabled_components_have_no_route() -> None:
    values = {"search": {"enabled": False}, "notify": {"enabled": False}}
    from tests.helm.chart import template

    result = template(values)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (config_map,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{fullname()}-envoy"
    ]
    config = yaml.safe_load(config_map["data"]["envoy.yaml"])
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert clusters == {"gateway", "chat", "presence", "media"}
    assert {r["route"]["cluster"] for r in routes(config)} <= clusters


@pytest.mark.envoy
@pytest.mark.parametrize("values", [v for v in sorted(VALUE_SETS) if v != "minimal"])
def test_a_real_envoy_accepts_the_config(values: str, tmp_path: Path) -> None:
    envoy = require_binary("envoy", "envoy")
    config = tmp_path / "envoy.yaml"
    config.write_text(
        named(render(values), "ConfigMap", f"{fullname()}-envoy")["data"]["envoy.yaml"]
    )
    result = subprocess.run(
        [envoy, "--mode", "validate", "--config-path", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
