"""The chart's pods: probes, resources, security contexts, the stop sequence, and settings that
exist (docs/settings.md) and that each service's own configuration accepts."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from chatmesh_common.settings import ConfigError
from tests.helm.chart import (
    GRPC_SERVICES,
    VALUE_SETS,
    Doc,
    chatmesh_workloads,
    component,
    container_env,
    env_names,
    fullname,
    named,
    of_kind,
    pod_spec,
    render,
    settings_sections,
    workloads,
)

pytestmark = pytest.mark.helm

# The sections of docs/settings.md each component reads.
SECTIONS = {
    "chat": ("every process", "chat_service", "identity provider", "NATS bus", "ScyllaDB store"),
    "migrate": ("every process", "chat_service", "NATS bus", "ScyllaDB store"),
    "presence": ("every process", "presence_service", "identity provider", "NATS bus"),
    "gateway": ("every process", "gateway_ws", "identity provider"),
    "search": ("every process", "search_service", "NATS bus"),
    "media": ("every process", "media_service", "NATS bus", "ScyllaDB store"),
    "notify": (
        "every process",
        "notify_service",
        "push providers",
        "identity provider",
        "NATS bus",
    ),
}

# Each component's configuration class, as `chatmesh serve` reads it.
CONFIGS = {
    "chat": "chat_service.config:ChatConfig",
    "migrate": "chat_service.config:ChatConfig",
    "presence": "presence_service.config:PresenceConfig",
    "gateway": "gateway_ws.config:GatewayConfig",
    "search": "search_service.config:SearchConfig",
    "media": "media_service.config:MediaConfig",
    "notify": "notify_service.config:NotifyConfig",
}


def chatmesh_containers(values: str) -> list[tuple[Doc, Doc]]:
    """(workload, container) of every chatmesh container (not Envoy's)."""
    return [
        (doc, container)
        for doc in workloads(render(values))
        if component(doc) != "envoy"
        for container in pod_spec(doc)["containers"]
    ]


def _cases() -> list[tuple[str, str]]:
    return [(values, name) for values in sorted(VALUE_SETS) for name in chatmesh_workloads(values)]


def _container(values: str, name: str) -> Doc:
    (container,) = [c for d, c in chatmesh_containers(values) if component(d) == name]
    return container


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_every_deployment_has_probes_resources_and_a_locked_down_context(values: str) -> None:
    for deployment in of_kind(render(values), "Deployment"):
        name = deployment["metadata"]["name"]
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], name
        for container in spec["containers"]:
            assert container["readinessProbe"] and container["livenessProbe"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
    for job in of_kind(render(values), "Job"):
        (container,) = pod_spec(job)["containers"]
        assert pod_spec(job)["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["limits"]


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_grpc_services_have_native_grpc_probes_and_the_gateway_healthz(values: str) -> None:
    for deployment, container in chatmesh_containers(values):
        if deployment["kind"] != "Deployment":
            continue
        name = component(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if name in GRPC_SERVICES:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": ports["grpc"]}, (name, probe)
            env = container_env(render(values), container)
            assert env["CHATMESH_GRPC_BIND"].endswith(f":{ports['grpc']}")
            assert env["CHATMESH_METRICS_PORT"] == str(ports["metrics"])
        else:
            assert name == "gateway"
            assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "ws"}
            env = container_env(render(values), container)
            assert env["CHATMESH_WS_PORT"] == str(ports["ws"])
            assert env["CHATMESH_WS_METRICS_PORT"] == str(ports["metrics"])


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_the_stop_fits_in_the_termination_grace_period(values: str) -> None:
    docs = render(values)
    for deployment in of_kind(docs, "Deployment"):
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        pre_stop = float(command[1])
        if component(deployment) == "envoy":
            assert spec["terminationGracePeriodSeconds"] > pre_stop
            continue
        env = container_env(docs, container)
        drain = float(env["CHATMESH_DRAIN_S"])
        grace = float(env.get("CHATMESH_SHUTDOWN_GRACE_S") or env["CHATMESH_WS_CLOSE_TIMEOUT_S"])
        # The preStop drain is the process's drain window.
        assert pre_stop == drain
        assert spec["terminationGracePeriodSeconds"] > pre_stop + drain + grace
        # A draining pod is not restarted by its liveness probe meanwhile.
        live = container["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] > drain + grace


@pytest.mark.parametrize(("values", "name"), _cases())
def test_env_names_are_settings_of_docs_settings_md(values: str, name: str) -> None:
    sections = settings_sections()
    missing = [title for title in SECTIONS[name] if title not in sections]
    if missing:
        pytest.fail(f"docs/settings.md has no section {missing}: the chart and settings drifted")
    known = frozenset().union(*(sections[title] for title in SECTIONS[name]))
    names = env_names(render(values), _container(values, name))
    assert names - known == set(), f"{name}: not settings of {SECTIONS[name]}"


def _config_class(name: str) -> Callable[[Mapping[str, str]], Any]:
    module_name, _, attr = CONFIGS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.fail(f"{module_name} does not exist, but the chart runs it")
    from_env: Callable[[Mapping[str, str]], Any] = getattr(module, attr).from_env
    return from_env


@pytest.mark.parametrize(("values", "name"), _cases())
def test_each_service_accepts_its_environment(values: str, name: str) -> None:
    """The rendered environment, given to the service's own configuration: values in range,
    and no embedded backend where the mode is cluster."""
    env = container_env(render(values), _container(values, name))
    try:
        config = _config_class(name)(env)
    except ConfigError as exc:
        pytest.fail(f"{name}: {exc}")
    if name in ("chat", "presence", "media", "migrate"):
        assert config.mode == "cluster"


def test_targets_are_the_rendered_services() -> None:
    docs = render("defaults")
    ports = {
        service["metadata"]["name"]: {p["port"] for p in service["spec"]["ports"]}
        for service in of_kind(docs, "Service")
    }
    seen = 0
    for _doc, container in chatmesh_containers("defaults"):
        for key, value in container_env(docs, container).items():
            if key.endswith("_TARGET"):
                host, _, port = value.rpartition(":")
                assert int(port) in ports[host], (key, value)
                seen += 1
    assert seen >= 9


def test_chat_creates_the_durable_consumers_of_search_and_notify() -> None:
    docs = render("defaults")
    env = container_env(docs, _container("defaults", "chat"))
    assert set(env["CHATMESH_NATS_CONSUMERS"].split(",")) == {"search", "notify"}
    assert env["CHATMESH_MEDIA_TARGET"] == f"{fullname()}-media:50056"
    minimal = container_env(render("minimal"), _container("minimal", "chat"))
    assert "CHATMESH_NATS_CONSUMERS" not in minimal and "CHATMESH_MEDIA_TARGET" not in minimal


def test_push_keys_are_files_from_the_secret() -> None:
    docs = render("full")
    notify = named(docs, "Deployment", f"{fullname()}-notify")
    (container,) = pod_spec(notify)["containers"]
    env = container_env(docs, container)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "push-keys"]
    (volume,) = [v for v in pod_spec(notify)["volumes"] if v["name"] == "push-keys"]
    files = {f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]}
    assert files == {
        env["CHATMESH_APNS_KEY_FILE"],
        env["CHATMESH_FCM_SERVICE_ACCOUNT_FILE"],
        env["CHATMESH_VAPID_KEY_FILE"],
    }


def test_single_replica_stores_are_recreated_on_their_volume() -> None:
    docs = render("defaults")
    for name in ("search", "notify"):
        deployment = named(docs, "Deployment", f"{fullname()}-{name}")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "data"]
        claim = volume["persistentVolumeClaim"]["claimName"]
        named(docs, "PersistentVolumeClaim", claim)


def test_per_address_caps_are_off_behind_envoy() -> None:
    """Behind Envoy the gateway sees Envoy's address: a per-address cap would cap every app."""
    behind = container_env(render("defaults"), _container("defaults", "gateway"))
    assert behind["CHATMESH_WS_MAX_SOCKETS_PER_IP"] == "0"
    assert behind["CHATMESH_WS_AUTH_FAILURES_PER_MIN"] == "0"
    direct = container_env(render("minimal"), _container("minimal", "gateway"))
    assert "CHATMESH_WS_MAX_SOCKETS_PER_IP" not in direct
    assert "CHATMESH_WS_AUTH_FAILURES_PER_MIN" not in direct
