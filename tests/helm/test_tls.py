"""The chart with `tls.enabled`: every pod mounts the Secret and reads it through the CHATMESH_TLS_*
settings, probes that cannot speak TLS are replaced, and Envoy speaks TLS to its upstreams."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from chatmesh_common.tls import TlsSettings
from tests.helm.chart import (
    COMPONENTS,
    GRPC_SERVICES,
    Doc,
    component,
    container_env,
    fullname,
    named,
    pod_spec,
    settings_sections,
    template,
    validate,
    workloads,
)
from tests.servers.binaries import require_binary
from tests.servers.certs import make_certs

pytestmark = pytest.mark.helm

MOUNT = "/etc/chatmesh/tls"
TLS_VALUES = {"tls": {"enabled": True, "secretName": "chatmesh-tls", "clientAuth": True}}


@functools.cache
def rendered() -> tuple[Doc, ...]:
    result = template(TLS_VALUES)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def containers() -> dict[str, Doc]:
    """Each component's container (Envoy's included)."""
    return {component(doc): pod_spec(doc)["containers"][0] for doc in workloads(rendered())}


def test_every_object_validates() -> None:
    for doc in rendered():
        if doc["kind"] == "ServiceMonitor":
            continue
        try:
            validate(doc)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_services_read_the_mounted_secret_through_the_tls_settings() -> None:
    tls_names = settings_sections()["TLS"]
    for name in COMPONENTS:
        container = containers()[name]
        env = container_env(rendered(), container)
        assert {n for n in env if n.startswith("CHATMESH_TLS_")} == tls_names, name
        assert env["CHATMESH_TLS_CLIENT_AUTH"] == "true"
        assert all(env[n].startswith(f"{MOUNT}/") for n in tls_names if n.endswith("_FILE"))
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[MOUNT] == "tls", name
    migrate = containers()["migrate"]
    assert not any(n.startswith("CHATMESH_TLS_") for n in container_env(rendered(), migrate))


def test_the_rendered_settings_make_mutual_tls(tmp_path: Path) -> None:
    """The chart's CHATMESH_TLS_* values, on real files, are accepted as mutual TLS."""
    certs = make_certs(tmp_path)
    files = {
        f"{MOUNT}/tls.crt": str(certs.service.cert),
        f"{MOUNT}/tls.key": str(certs.service.key),
        f"{MOUNT}/ca.crt": str(certs.ca),
    }
    env = container_env(rendered(), containers()["chat"])
    local = {k: files.get(v, v) for k, v in env.items()}
    tls = TlsSettings.from_env(local)
    assert tls.client_auth and tls.server_credentials() and tls.channel_credentials()


def test_probes_that_cannot_speak_tls_are_replaced() -> None:
    for name in GRPC_SERVICES:
        container = containers()[name]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["tcpSocket"] == {"port": "grpc"}, (name, probe)
            assert "grpc" not in container[probe], (name, probe)
    gateway = containers()["gateway"]["readinessProbe"]["httpGet"]
    assert gateway["scheme"] == "HTTPS"


def test_envoy_speaks_tls_to_every_upstream_with_its_certificate() -> None:
    config = yaml.safe_load(
        named(rendered(), "ConfigMap", f"{fullname()}-envoy")["data"]["envoy.yaml"]
    )
    for cluster in config["static_resources"]["clusters"]:
        context = cluster["transport_socket"]["typed_config"]["common_tls_context"]
        assert context["validation_context"]["trusted_ca"]["filename"] == f"{MOUNT}/ca.crt"
        assert context["tls_certificates"][0]["certificate_chain"]["filename"].startswith(MOUNT)
        expected = ["http/1.1"] if cluster["name"] == "gateway" else ["h2"]
        assert context["alpn_protocols"] == expected, cluster["name"]
    mounts = {m["mountPath"] for m in containers()["envoy"]["volumeMounts"]}
    assert MOUNT in mounts


@pytest.mark.envoy
def test_a_real_envoy_accepts_the_tls_config(tmp_path: Path) -> None:
    """`envoy --mode validate` on the config, its certificate paths pointed at real files."""
    envoy = require_binary("envoy", "envoy")
    certs = make_certs(tmp_path / "certs")
    text = named(rendered(), "ConfigMap", f"{fullname()}-envoy")["data"]["envoy.yaml"]
    for mounted, real in (
        (f"{MOUNT}/tls.crt", certs.service.cert),
        (f"{MOUNT}/tls.key", certs.service.key),
        (f"{MOUNT}/ca.crt", certs.ca),
    ):
        text = text.replace(mounted, str(real))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = subprocess.run(
        [envoy, "--mode", "validate", "--config-path", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tls_without_a_secret_name_is_refused() -> None:
    result = template({"tls": {"enabled": True}})
    assert result.returncode != 0
    assert "secretName" in result.stderr
