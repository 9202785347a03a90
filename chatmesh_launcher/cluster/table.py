"""Plain-text tables of the cluster's components and how to connect to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .state import ClusterState, Component

_HEADERS = ("NAME", "PID", "ADDRESS", "LOG")


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _shown_log(log: str, cwd: Path) -> str:
    """A log path relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(Path(log).relative_to(cwd))
    except ValueError:
        return log


def components_table(
    state: ClusterState, cwd: Path, liveness: Mapping[str, str] | None = None
) -> str:
    """What runs where; with `liveness` (name -> state) a STATE column too."""
    rows: list[list[str]] = []
    for component in state.components:
        log = _shown_log(component.log, cwd)
        row = [component.name, str(component.pid), component.address, log]
        if liveness is not None:
            row.insert(1, liveness.get(component.name, "?"))
        rows.append(row)
    headers = list(_HEADERS)
    if liveness is not None:
        headers.insert(1, "STATE")
    return format_table(rows, headers)


def connect_hints(state: ClusterState, cwd: Path) -> str:
    """How to reach the cluster through Envoy: the addresses, a token, a grpcurl call."""
    directory = _shown_log(state.directory, cwd)
    command = "chatmesh"
    return (
        f"Envoy (the edge): gRPC {state.envoy_grpc}   WebSocket {state.envoy_ws}\n"
        f"  token:   {command} token alice --data-dir {directory}\n"
        f'  grpcurl: grpcurl -plaintext -H "authorization: Bearer $({command} token alice'
        f' --data-dir {directory} 2>/dev/null)" {state.envoy_grpc} list\n'
        f"  chat:    {command} chat alice --url {state.envoy_ws} --data-dir {directory}\n"
        f"  stop:    {command} cluster down --dir {directory}\n"
    )


def component_names(components: Sequence[Component]) -> str:
    return ", ".join(c.name for c in components)
