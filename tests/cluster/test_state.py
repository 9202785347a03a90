"""The cluster's state file: written whole, read back equal, refused when foreign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatmesh_launcher.cluster.state import (
    ClusterState,
    Component,
    load_state,
    save_state,
    state_path,
)

pytestmark = pytest.mark.timeout(10)


def _state(directory: Path) -> ClusterState:
    nats = Component("nats", 101, "127.0.0.1:4222", str(directory / "nats.log"), "tcp", "", 55)
    envoy = Component(
        "envoy", 102, "127.0.0.1:8081", "envoy.log", "http", "http://127.0.0.1:9901/ready", 56
    )
    state = ClusterState(directory=str(directory), envoy_grpc="127.0.0.1:8081")
    return state.with_component(nats).with_component(envoy)


def test_a_saved_state_reads_back_equal(tmp_path: Path) -> None:
    """Every field survives the round trip through the file, components in start order."""
    state = _state(tmp_path)
    save_state(state)
    assert load_state(tmp_path) == state
    assert [c.name for c in state.components] == ["nats", "envoy"]


def test_no_state_file_means_no_cluster(tmp_path: Path) -> None:
    """A directory where `up` never ran has no state: None, not an error."""
    assert load_state(tmp_path / "never") is None


def test_a_component_recorded_again_replaces_the_old_entry(tmp_path: Path) -> None:
    """Recording a name twice keeps one entry, the newest."""
    state = _state(tmp_path).with_component(Component("nats", 201, "127.0.0.1:4223", "n.log"))
    assert [(c.name, c.pid) for c in state.components] == [("envoy", 102), ("nats", 201)]


def test_saving_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The file is written through a temporary name that is renamed over it."""
    save_state(_state(tmp_path))
    save_state(_state(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.parametrize(
    "text",
    ["not json", json.dumps({"version": 99, "directory": "x"}), json.dumps({"directory": "x"})],
)
def test_a_foreign_file_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    """Garbage or another version is a ValueError naming the file, never a guess."""
    state_path(tmp_path).write_text(text)
    with pytest.raises(ValueError, match=r"state\.json"):
        load_state(tmp_path)
