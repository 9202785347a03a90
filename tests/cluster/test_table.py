"""The tables `up` and `status` print: aligned columns, short log paths, how to connect."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmesh_launcher.cluster.state import ClusterState, Component
from chatmesh_launcher.cluster.table import components_table, connect_hints, format_table

pytestmark = pytest.mark.timeout(10)


def _state(root: Path) -> ClusterState:
    directory = root / ".cluster"
    return ClusterState(
        directory=str(directory),
        components=(
            Component("nats", 7, "127.0.0.1:4222", str(directory / "nats" / "nats-server.log")),
            Component("gateway-1", 12345, "127.0.0.1:18080", "/var/log/elsewhere.log", "http"),
        ),
        envoy_grpc="127.0.0.1:8081",
        envoy_ws="ws://127.0.0.1:8081/v1/ws",
    )


def test_columns_are_padded_to_their_widest_cell() -> None:
    """Every column starts at the same offset on every line; no trailing spaces."""
    text = format_table([["a", "1", "x"], ["longer", "22", "y"]], ["NAME", "PID", "LOG"])
    assert text.splitlines() == ["NAME    PID  LOG", "a       1    x", "longer  22   y"]


def test_the_table_shows_logs_relative_to_the_working_directory(tmp_path: Path) -> None:
    """A log inside the cwd is shown relative to it; one elsewhere keeps its absolute path."""
    lines = components_table(_state(tmp_path), tmp_path).splitlines()
    assert lines[0].split() == ["NAME", "PID", "ADDRESS", "LOG"]
    assert lines[1].split() == ["nats", "7", "127.0.0.1:4222", ".cluster/nats/nats-server.log"]
    assert lines[2].split() == ["gateway-1", "12345", "127.0.0.1:18080", "/var/log/elsewhere.log"]


def test_the_status_table_has_a_state_column(tmp_path: Path) -> None:
    """With liveness the second column is each component's state ("?" when not probed)."""
    table = components_table(_state(tmp_path), tmp_path, {"nats": "up"})
    rows = [line.split()[:2] for line in table.splitlines()]
    assert rows == [["NAME", "STATE"], ["nats", "up"], ["gateway-1", "?"]]


def test_the_hints_name_envoy_a_token_and_a_grpcurl_call(tmp_path: Path) -> None:
    """How to connect: Envoy's addresses, a token line and grpcurl against Envoy."""
    hints = connect_hints(_state(tmp_path), tmp_path)
    assert "gRPC 127.0.0.1:8081" in hints and "ws://127.0.0.1:8081/v1/ws" in hints
    assert "chatmesh token alice --data-dir .cluster\n" in hints
    assert "grpcurl -plaintext" in hints and "127.0.0.1:8081 list" in hints
    assert "chatmesh cluster down --dir .cluster" in hints
