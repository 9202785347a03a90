"""The cluster's state file: what `chatmesh cluster up` started, where, and how to probe it.

One JSON file in the cluster's directory, rewritten (atomically) after each component starts,
so `down` can stop everything started so far even when `up` failed half-way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

STATE_FILE = "state.json"
# Bumped when the layout changes; `down` and `status` refuse a file of another version.
STATE_VERSION = 1


@dataclass(frozen=True)
class Component:
    """One process of the cluster.

    `probe` says how `status` checks it: "grpc" (gRPC health of `address`), "http" (`url`
    answers 200), or "tcp" (`address` accepts a connection). `start_ticks` is the process's start
    time in clock ticks since boot (/proc/PID/stat), so a recycled pid is never taken for it.
    `grace_s` is how long `down` waits after SIGTERM before SIGKILL.
    """

    name: str
    pid: int
    address: str
    log: str
    probe: str = "tcp"
    url: str = ""
    start_ticks: int = 0
    grace_s: float = 20.0


@dataclass(frozen=True)
class ClusterState:
    """Everything `up` started, in start order, and how to reach the cluster."""

    directory: str
    components: tuple[Component, ...] = ()
    envoy_grpc: str = ""
    envoy_ws: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def with_component(self, component: Component) -> ClusterState:
        kept = tuple(c for c in self.components if c.name != component.name)
        return replace(self, components=(*kept, component))

    def to_json(self) -> str:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        if data.pop("version", None) != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} cluster state file")
        components = tuple(Component(**c) for c in data.pop("components", ()))
        return cls(components=components, **data)


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def save_state(state: ClusterState) -> None:
    """Writes the state file through a temporary name, so a reader never sees half a file."""
    path = state_path(Path(state.directory))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(state.to_json())
    os.replace(temporary, path)


def load_state(directory: Path) -> ClusterState | None:
    """The state in `directory`, or None when no cluster was started there."""
    path = state_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return ClusterState.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path} is not a cluster state file ({exc})") from exc
