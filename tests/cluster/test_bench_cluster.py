"""`python -m bench send --mode cluster --smoke`: the benchmarks run on the local cluster (every
service its own process, behind Envoy) and leave nothing running behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import _run

from .test_cluster_up import CLUSTER_MARKS, _require_servers

pytestmark = [*CLUSTER_MARKS, pytest.mark.timeout(400)]


def test_send_smoke_on_the_cluster(tmp_path: Path) -> None:
    _require_servers()
    proc = _run(tmp_path, "send", "--mode", "cluster", "--smoke", timeout_s=360)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "send.json").read_text())
    assert data["mode"] == "cluster"
    saturation, fixed = data["rows"]
    assert saturation["acked_per_s"] > 0
    assert fixed["samples"] == 40 and fixed["lost"] == 0 and not fixed["errors"]
    # CPU is summed over the cluster's processes and its busiest ones are named.
    assert "chat-" in fixed["busiest_cpu_%"]
