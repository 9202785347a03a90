"""The `soak` scenario: a steady send rate from many connected devices for `--minutes`, one
measured window per minute (`--seconds` long, 60 by default), and the resident memory of every
server process at the start and after each window, so a leak shows as growth that does not level
off. The windows are `deliver` steps (open-loop sends, e2e latency to every other member), so a
window's figures read like that scenario's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench.cluster import ClusterServer
from bench.report import Result
from bench.system import BenchServer

MIB = 2**20


def _rss_by_process(server: BenchServer) -> dict[str, int]:
    if isinstance(server, ClusterServer):
        return server.rss_by_process()
    return {"chatmesh dev": server.rss_bytes()}


def _growth_note(start: dict[str, int], end: dict[str, int]) -> str:
    parts = [
        f"{name} {start[name] / MIB:,.0f} -> {end.get(name, 0) / MIB:,.0f} MiB"
        for name in sorted(start, key=lambda n: -start[n])
    ]
    return "resident memory at the start and after the last window: " + "; ".join(parts)


def soak_windows(
    args: argparse.Namespace, server: BenchServer, result: Result, window: Callable[[], None]
) -> None:
    """Runs `window()` `args.minutes` times, labelling each row by its minute and adding the
    memory of the server processes after it; the growth goes in the notes and the targets."""
    start = _rss_by_process(server)
    began = time.monotonic()
    for minute in range(1, args.minutes + 1):
        window()
        rss = _rss_by_process(server)
        row = result.rows[-1]
        row["step"] = f"minute {minute} ({row['step']})"
        row["server_rss_mib"] = round(sum(rss.values()) / MIB, 1)
        row["elapsed_s"] = round(time.monotonic() - began)
    end = _rss_by_process(server)
    result.notes.append(_growth_note(start, end))
    growth = (sum(end.values()) - sum(start.values())) / MIB
    per_minute = growth / max(1, args.minutes)
    result.notes.append(
        f"growth: {growth:,.1f} MiB over {args.minutes} windows ({per_minute:,.1f} MiB a window)"
    )
