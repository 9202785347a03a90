"""Rendering helm/chatmesh with `helm template`, and what the chart's tests read from it.

Every value set renders once per test session (`render`), against a fixed Kubernetes version.
"""

from __future__ import annotations

import base64
import functools
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import kubernetes_validate.utils  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]

from tests.servers.binaries import require_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "chatmesh"
SETTINGS_DOC = REPO / "docs" / "settings.md"
KUBE_VERSION = "1.30.0"
RELEASE = "chat"
NAMESPACE = "chatmesh"

Doc = dict[str, Any]

GRPC_SERVICES = ("chat", "presence", "search", "media", "notify")
COMPONENTS = (*GRPC_SERVICES, "gateway")

# The value sets rendered by the tests.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Every optional feature on.
    "full": {
        "existingSecret": "chatmesh-credentials",
        "identity": {
            "jwksUrl": "https://id.example.com/.well-known/jwks.json",
            "issuer": "https://id.example.com/",
            "audience": "chatmesh",
            "algorithms": ["RS256", "ES256"],
        },
        "scylla": {
            "contactPoints": ["scylla-0.scylla", "scylla-1.scylla"],
            "replication": "NetworkTopologyStrategy:dc1=3",
            "user": "chatmesh",
            "datacenter": "dc1",
        },
        "nats": {"urls": ["nats://nats-0:4222", "nats://nats-1:4222"], "user": "chatmesh"},
        "chat": {
            "autoscaling": {"enabled": True},
            "env": {"CHATMESH_MAX_BODY_BYTES": 32768, "CHATMESH_RETENTION_DIRECT_DAYS": 365},
        },
        "gateway": {
            "autoscaling": {"enabled": True},
            "allowedOrigins": ["https://chat.example.com"],
            "env": {"CHATMESH_WS_SEND_RATE_PER_S": "10"},
        },
        "search": {"persistence": {"existingClaim": "search-index"}},
        "media": {"clamd": "clamd.security:3310"},
        "notify": {
            "persistence": {"enabled": False},
            "apns": {"enabled": True, "teamId": "TEAM123", "keyId": "KEY123", "topic": "app.x"},
            "fcm": {"enabled": True},
            "webpush": {"enabled": True, "subject": "mailto:ops@example.com"},
        },
        "envoy": {"autoscaling": {"enabled": True}, "service": {"type": "ClusterIP", "port": 8080}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "networkPolicy": {
            "enabled": True,
            "envoyFrom": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}],
            "storesTo": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
            "pushTo": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
        },
    },
    # The least: chat and one gateway, no proxy, no hook.
    "minimal": {
        "chat": {"replicas": 1, "pdb": {"enabled": False}},
        "gateway": {"replicas": 1, "pdb": {"enabled": False}},
        "presence": {"enabled": False},
        "search": {"enabled": False},
        "media": {"enabled": False},
        "notify": {"enabled": False},
        "envoy": {"enabled": False},
        "migrate": {"enabled": False},
        "secrets": {"jwtSecret": "j" * 32, "serviceSecret": "s" * 32},
    },
}

# What an existingSecret holds in the tests (any value its setting accepts).
EXISTING_SECRET = {
    "jwt-secret": "j" * 32,
    "service-secret": "s" * 32,
    "redis-url": "redis://redis:6379/0",
    "scylla-password": "scylla",
    "nats-password": "nats",
    "s3-access-key": "access",
    "s3-secret-key": "secret",
    "webhook-secret": "w" * 32,
}


def chatmesh_workloads(name: str) -> list[str]:
    """The chatmesh components value set `name` runs (no rendering: usable while collecting)."""
    values = VALUE_SETS[name]
    found = [c for c in COMPONENTS if values.get(c, {}).get("enabled", True)]
    if values.get("migrate", {}).get("enabled", True):
        found.append("migrate")
    return found


def helm_binary() -> str:
    return require_binary("helm", "helm", extra_dirs=[REPO / ".tools" / "bin"])


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, check=check, timeout=60
    )


def template(values: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with `values`; not checked (a schema error is an answer)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        return helm(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            "--values",
            file.name,
            *extra,
            check=False,
        )


@functools.cache
def render(name: str) -> tuple[Doc, ...]:
    """The objects the chart renders with value set `name` (cached for the session)."""
    result = template(VALUE_SETS[name])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def fullname() -> str:
    return f"{RELEASE}-chatmesh"


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def component(doc: Doc) -> str:
    labels: dict[str, str] = doc["metadata"]["labels"]
    return labels["app.kubernetes.io/component"]


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def workloads(docs: tuple[Doc, ...]) -> Iterator[Doc]:
    """The Deployments and Jobs."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc


def secret_values(docs: tuple[Doc, ...], name: str) -> dict[str, str] | None:
    """The decoded data of the rendered Secret `name`; None when the chart does not render it."""
    for doc in of_kind(docs, "Secret"):
        if doc["metadata"]["name"] == name:
            data: dict[str, str] = doc.get("data") or {}
            return {key: base64.b64decode(value).decode() for key, value in data.items()}
    return None


def container_env(docs: tuple[Doc, ...], container: Doc) -> dict[str, str]:
    """The environment a container starts with: its ConfigMaps, then its env entries, secrets
    resolved from the rendered Secret or, when the chart does not render it, EXISTING_SECRET."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = named(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update({key: str(value) for key, value in config_map["data"].items()})
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        rendered = secret_values(docs, ref["name"])
        data = EXISTING_SECRET if rendered is None else rendered
        if ref["key"] in data:
            env[entry["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{entry['name']}: key {ref['key']} of {ref['name']}"
    return env


def env_names(docs: tuple[Doc, ...], container: Doc) -> set[str]:
    """Every variable name a container's environment sets, secret or not."""
    names = {entry["name"] for entry in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(named(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return names


@functools.cache
def settings_sections() -> dict[str, frozenset[str]]:
    """docs/settings.md: section title -> the variables its table lists."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in SETTINGS_DOC.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), set())
        elif current is not None and (match := re.match(r"^\| `(CHATMESH_[A-Z0-9_]+)` \|", line)):
            current.add(match.group(1))
    return {title: frozenset(names) for title, names in sections.items()}


# kubernetes-validate reads and parses its schema files (megabytes of JSON) on every call: read
# each once.
kubernetes_validate.utils.schema_contents = functools.cache(
    kubernetes_validate.utils.schema_contents
)


def validate(doc: Doc) -> None:
    """Validates one object against KUBE_VERSION's schema, strict: no unknown fields."""
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
