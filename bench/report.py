"""What a scenario produces: a JSON file, a markdown table and a latency plot (PNG).

A `Result` holds the table rows (one per measured step) and, for the plot, the raw samples of
each series (latencies in milliseconds, or memory against connections for `idle`). The JSON
keeps the rows, the parameters, the machine and the exact command, not the raw samples.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    import grpc
    import websockets

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "websockets": websockets.version.version,
    }


@dataclass
class Result:
    scenario: str
    mode: str
    params: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Plot series: label -> samples (latency ms) or label -> (x, y) points for kind "xy".
    series: dict[str, list[float]] = field(default_factory=dict)
    xy: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    xy_labels: tuple[str, str] = ("", "")
    notes: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def target(self, name: str, measured: float, limit: float, higher_is_better: bool) -> None:
        met = measured >= limit if higher_is_better else measured <= limit
        self.targets.append(
            {
                "target": name,
                "limit": limit,
                "measured": round(measured, 3),
                "met": met,
                "off_by": None
                if met or not measured == measured  # NaN
                else f"{(measured / limit - 1) * 100:+.0f}%",
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "command": "python -m bench " + shlex.join(sys.argv[1:]),
            "machine": machine(),
            "params": self.params,
            "rows": self.rows,
            "targets": self.targets,
            "notes": self.notes,
        }

    def markdown(self) -> str:
        lines = [f"### {self.scenario} ({self.mode})", ""]
        lines.append("`python -m bench " + shlex.join(sys.argv[1:]) + "`")
        lines.append("")
        lines.extend(table(self.rows))
        if self.targets:
            lines.append("")
            lines.extend(table(self.targets))
        for note in self.notes:
            lines.append("")
            lines.append(f"- {note}")
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> bool:
        """Writes the PNG; False when there is nothing to plot."""
        if not self.series and not self.xy:
            return False
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        if self.series:
            for label, samples in self.series.items():
                if not samples:
                    continue
                ordered = sorted(samples)
                n = len(ordered)
                ax.plot(ordered, [(i + 1) / n for i in range(n)], label=f"{label} (n={n:,})")
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("fraction of samples at or below")
            ax.grid(True, which="both", alpha=0.3)
        else:
            for label, (xs, ys) in self.xy.items():
                ax.plot(xs, ys, marker="o", label=label)
            ax.set_xlabel(self.xy_labels[0])
            ax.set_ylabel(self.xy_labels[1])
            ax.grid(True, alpha=0.3)
        ax.set_title(f"chatmesh bench: {self.scenario} ({self.mode})")
        ax.legend(loc="lower right" if self.series else "upper left", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return True

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        json_path = out_dir / f"{self.scenario}.json"
        json_path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        written.append(json_path)
        md_path = out_dir / f"{self.scenario}.md"
        md_path.write_text(self.markdown())
        written.append(md_path)
        png = out_dir / f"{self.scenario}.png"
        if self.plot(png):
            written.append(png)
        return written


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    if value is None:
        return "-"
    return str(value)


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return lines


def merge_counters(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Top functions of a py-spy raw (collapsed stacks) profile: self and inclusive share."""
    if not raw.exists():
        return "(no profile)"
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        self_counts[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            incl_counts[name] += count
    if not total:
        return "(empty profile)"
    lines = [f"samples: {total:,} (all threads)", "", "| self % | function |", "|---|---|"]
    for name, count in self_counts.most_common(top):
        lines.append(f"| {count / total * 100:.1f} | `{name}` |")
    lines += ["", "| inclusive % | function |", "|---|---|"]
    for name, count in incl_counts.most_common(top):
        lines.append(f"| {count / total * 100:.1f} | `{name}` |")
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; keep function and file:line.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name
