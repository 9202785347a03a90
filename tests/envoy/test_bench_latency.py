"""`python -m bench.envoy_latency` keeps working: a tiny run prints one row per path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.envoy
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_latency_bench_prints_every_path(envoy_binary: str) -> None:
    """Five round trips per path: direct, through Envoy in plaintext, through Envoy over TLS."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.envoy_latency", "--messages", "5", "--warmup", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].split()[0] == "path"
    assert [row.split()[0] for row in rows[1:]] == ["direct", "through", "through"]
    assert all(row.split()[-4] == "5" for row in rows[1:])
