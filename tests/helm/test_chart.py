"""helm/chatmesh renders valid Kubernetes objects for every value set, and its schema refuses
bad values: helm lint, helm template, kubernetes-validate against a fixed Kubernetes version."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.helm.chart import (
    CHART,
    KUBE_VERSION,
    VALUE_SETS,
    Doc,
    component,
    fullname,
    helm,
    named,
    of_kind,
    pod_spec,
    render,
    template,
    validate,
)

pytestmark = pytest.mark.helm

# Custom resources: no schema in kubernetes-validate; checked structurally below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def test_lint() -> None:
    result = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_lint_with_values(values: str, tmp_path: Any) -> None:
    import yaml  # type: ignore[import-untyped]

    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(VALUE_SETS[values]))
    result = helm("lint", "--kube-version", KUBE_VERSION, str(CHART), "-f", str(file), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_every_object_validates(values: str) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            validate(doc)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{values}: {where} at {path}: {exc.message}")


def test_kinds_of_each_value_set() -> None:
    def kinds(values: str) -> set[str]:
        return {doc["kind"] for doc in render(values)}

    assert kinds("defaults") == {
        "ConfigMap",
        "Deployment",
        "Job",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    }
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"} <= kinds("full")
    assert "Secret" not in kinds("full")  # existingSecret: the chart makes none
    assert kinds("minimal") == {"ConfigMap", "Deployment", "Secret", "Service"}


def test_a_deployment_and_a_service_per_component() -> None:
    docs = render("defaults")
    deployments = {component(doc) for doc in of_kind(docs, "Deployment")}
    assert deployments == {"chat", "presence", "gateway", "search", "media", "notify", "envoy"}
    for name in deployments:
        named(docs, "Service", f"{fullname()}-{name}")
    assert {component(doc) for doc in of_kind(render("minimal"), "Deployment")} == {
        "chat",
        "gateway",
    }


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_selectors_match(values: str) -> None:
    """Services, PDBs, HPAs and ServiceMonitors reach pods and ports that exist."""
    docs = render(values)
    deployments = of_kind(docs, "Deployment")
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"]
        for doc in deployments
    }
    for doc in deployments:
        assert _selects(doc["spec"]["selector"]["matchLabels"], pods[doc["metadata"]["name"]])
    for service in of_kind(docs, "Service"):
        targets = [
            d
            for d in deployments
            if _selects(service["spec"]["selector"], pods[d["metadata"]["name"]])
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in pod_spec(targets[0])["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(_selects(selector, labels) for labels in pods.values()), pdb["metadata"]["name"]
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = named(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], "the HPA owns replicas"
    for monitor in of_kind(docs, "ServiceMonitor"):
        _check_service_monitor(docs, monitor)


def _check_service_monitor(docs: tuple[Doc, ...], monitor: Doc) -> None:
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    services = [
        s
        for s in of_kind(docs, "Service")
        if _selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    # One per gRPC service and the gateway: the ClusterIP Services, not the headless ones.
    assert len(services) == 6
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        for service in services:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_service_monitor_is_off_by_default() -> None:
    assert not of_kind(render("defaults"), "ServiceMonitor")


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"chat": {"replicas": "three"}}, "/chat/replicas"),
        ({"search": {"replicas": 2}}, "/search/replicas"),
        ({"mode": "clustered"}, "/mode"),
        ({"chat": {"env": {"MAX_BODY_BYTES": "1"}}}, "MAX_BODY_BYTES"),
        ({"chatt": {"replicas": 3}}, "chatt"),
        ({"gateway": {"resources": {"limits": None}}}, "limits"),
        ({"notify": {"webpush": {"enabled": True}}}, "subject"),
        ({"shutdown": {"drainSeconds": -1}}, "drainSeconds"),
        ({"redis": {"url": ""}}, "/redis/url"),
        ({"chat": {"enabled": False}}, "/chat/enabled"),
        ({"presence": {"enabled": False}}, "/presence/enabled"),
        ({"s3": {"endpoint": ""}}, "/s3/endpoint"),
        ({"notify": {"apns": {"enabled": True, "teamId": "T"}}}, "/notify/apns/keyId"),
    ],
)
def test_schema_refuses(values: dict[str, Any], complaint: str) -> None:
    result = template(values)
    assert result.returncode != 0
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_migration_is_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = render("defaults")
    job = named(docs, "Job", f"{fullname()}-migrate")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["migrate"]
    # Hooks run before the release's objects exist: the Job reads no ConfigMap, and its Secret
    # is a hook too, made before it.
    assert "envFrom" not in container
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    for name in refs:
        secret = named(docs, "Secret", name)
        annotations = secret["metadata"]["annotations"]
        assert "pre-install" in annotations["helm.sh/hook"]
        assert int(annotations["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"].get("helm.sh/hook-weight", "0")
        )
    # With existingSecret, the Job reads it (it exists before the release).
    full = named(render("full"), "Job", f"{fullname()}-migrate")
    (container,) = pod_spec(full)["containers"]
    assert {
        e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
    } == {"chatmesh-credentials"}


def test_existing_secret_is_the_only_secret_read() -> None:
    for doc in render("full"):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(doc)
        for container in spec["containers"]:
            for entry in container.get("env", []):
                if "valueFrom" in entry:
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "chatmesh-credentials"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "chatmesh-credentials"


def test_generated_secrets_differ() -> None:
    from tests.helm.chart import secret_values

    values = secret_values(render("defaults"), f"{fullname()}-secrets")
    assert values is not None
    assert len(values["jwt-secret"]) >= 32 and len(values["service-secret"]) >= 32
    assert values["jwt-secret"] != values["service-secret"]


def test_network_policies_cover_every_pod() -> None:
    docs = render("full")
    policies = of_kind(docs, "NetworkPolicy")
    for workload in [*of_kind(docs, "Deployment"), *of_kind(docs, "Job")]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selecting = [
            p for p in policies if _selects(p["spec"]["podSelector"]["matchLabels"], labels)
        ]
        assert len(selecting) == 1, workload["metadata"]["name"]
        assert set(selecting[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # Only Envoy takes traffic from outside the release (and the metrics ports their scrapers).
    gateway = named(docs, "NetworkPolicy", f"{fullname()}-gateway")
    ws_rule = gateway["spec"]["ingress"][0]
    assert (
        ws_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "envoy"
    )
