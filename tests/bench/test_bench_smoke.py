"""Smoke runs of every benchmark scenario: the tool keeps working (tiny sizes, no timing asserted).

Each runs `python -m bench SCENARIO --smoke` as a user would, against a real `chatmesh dev`
subprocess, and checks that the JSON, markdown and plot were written and that every message the
scenario sent was acknowledged or delivered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    """`python -m bench ...` in its own process group: on a timeout the group is killed, so the
    `chatmesh dev` (or cluster) it started cannot outlive the test holding its ports."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        pytest.fail(f"bench {' '.join(args)} ran past {timeout_s} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _result(tmp_path: Path, scenario: str) -> dict[str, Any]:
    proc = _run(tmp_path, scenario, "--smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"{scenario}.{suffix}").stat().st_size > 0
    data: dict[str, Any] = json.loads((tmp_path / f"{scenario}.json").read_text())
    assert data["scenario"] == scenario
    assert data["mode"] == "embedded"
    assert data["rows"]
    return data


def test_send(tmp_path: Path) -> None:
    data = _result(tmp_path, "send")
    saturation, fixed = data["rows"][0], data["rows"][1]
    assert saturation["acked_per_s"] > 0
    assert fixed["samples"] == 40 and fixed["lost"] == 0 and not fixed["errors"]


def test_deliver(tmp_path: Path) -> None:
    data = _result(tmp_path, "deliver")
    row = data["rows"][0]
    delivered, expected = (int(x.replace(",", "")) for x in row["delivered"].split(" / "))
    assert delivered == expected > 0


def test_groups_speaks_json_and_reports_threads(tmp_path: Path) -> None:
    """groups: every message reaches the other members over JSON frames; CPU per thread shown."""
    data = _result(tmp_path, "groups")
    assert data["params"]["binary"] is False
    (row,) = data["rows"]
    delivered, expected = (int(x.replace(",", "")) for x in row["delivered"].split(" / "))
    assert delivered == expected > 0 and not row["errors"]
    assert row["acked_per_s"] > 0 and "main_thread_cpu_%" in row and "loadgen_lag_p99_ms" in row


def test_groups_binary(tmp_path: Path) -> None:
    """groups --binary: the same population over binary protobuf frames."""
    proc = _run(tmp_path, "groups", "--smoke", "--binary")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "groups.json").read_text())
    assert data["params"]["binary"] is True
    delivered, expected = (
        int(x.replace(",", "")) for x in data["rows"][0]["delivered"].split(" / ")
    )
    assert delivered == expected > 0


def test_write(tmp_path: Path) -> None:
    """write: closed-loop senders in one conversation get their acks."""
    data = _result(tmp_path, "write")
    (row,) = data["rows"]
    assert row["acked_per_s"] > 0 and row["p50_ms"] > 0 and not row["errors"]


def test_fanout(tmp_path: Path) -> None:
    data = _result(tmp_path, "fanout")
    assert [row["delivered"] for row in data["rows"]] == ["30 / 30", "30 / 30"]


def test_idle(tmp_path: Path) -> None:
    data = _result(tmp_path, "idle")
    assert data["rows"][-1]["connections"] == 30
    assert data["rows"][-1]["per_conn_kib"] > 0


def test_history(tmp_path: Path) -> None:
    data = _result(tmp_path, "history")
    row = data["rows"][0]
    assert row["samples"] == 30 and not row["errors"]


def test_media(tmp_path: Path) -> None:
    data = _result(tmp_path, "media")
    idle, *uploads = data["rows"]
    assert idle["pings"] > 0 and idle["ping_max_ms"] > 0
    assert [row["ready"] for row in uploads] == ["1 / 1", "1 / 1", "2 / 2"]
    assert all(not row["errors"] and row["p50_ms"] > 0 for row in uploads)
    assert data["targets"][0]["target"].startswith("ping p99 ms during uploads")


def test_push(tmp_path: Path) -> None:
    data = _result(tmp_path, "push")
    channel = [r for r in data["rows"] if r["step"].startswith("channel")]
    steady = [r for r in data["rows"] if r["step"].startswith("steady")]
    acks = [r for r in data["rows"] if r["step"].startswith("acks")]
    assert [r["pushes"] for r in channel] == ["20 / 20", "20 / 20"], channel
    assert all(r["exactly_once"] and r["lag_p50_ms"] > 0 for r in channel), channel
    # 20 msg/s into 3 groups coalesces some pushes by design; none may repeat or go missing.
    (row,) = steady
    assert row["duplicates"] == 0 and row["missing"] == 0 and not row["errors"], row
    assert [r["step"].split(", ", 1)[1] for r in acks] == [
        "push off (no targets)",
        "provider down (refused)",
        "provider hanging",
    ]
    assert all(r["lost"] == 0 and not r["errors"] and r["ack_p50_ms"] > 0 for r in acks), acks


@pytest.mark.parametrize("scenario", ["history", "push"])
def test_cluster_mode_says_which_scenarios_it_runs(tmp_path: Path, scenario: str) -> None:
    proc = _run(tmp_path, scenario, "--mode", "cluster")
    assert proc.returncode == 2
    assert f"{scenario} has no --mode cluster yet" in proc.stderr
    assert "cluster mode runs: send, deliver" in proc.stderr


def test_search(tmp_path: Path) -> None:
    data = _result(tmp_path, "search")
    index, *queries = data["rows"]
    assert index["messages"] == 2000 and index["messages_per_s"] > 0
    assert [row["step"] for row in queries] == [
        "query: frequent word",
        "query: rare word",
        "query: prefix",
        "query: two words",
    ]
    assert all(row["samples"] == 10 and row["p50_ms"] > 0 for row in queries)
    assert data["targets"][0]["target"] == "query p99 ms (every kind)"


def test_json_frames() -> None:
    """bench.json_frames: both codecs agree on every hot frame and a table is printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.json_frames", "--number", "20", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("\n") == 7 and "decode sendMessage" in proc.stdout


def test_soak_smoke(tmp_path: Path) -> None:
    data = _result(tmp_path, "soak")
    assert [row["step"] for row in data["rows"]] == [
        "minute 1 (20 sends/s)",
        "minute 2 (20 sends/s)",
    ]
    assert all(row["server_rss_mib"] > 0 for row in data["rows"])
    assert any(note.startswith("growth: ") for note in data["notes"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_sixty_seconds(tmp_path: Path) -> None:
    """The CI profile of the soak: 60 s of steady sends from 500 sockets, nothing lost (the
    10-minute, 5,000-socket run is `python -m bench soak`; its figures are in the docs)."""
    proc = _run(
        tmp_path, "soak", "--devices", "500", "--rates", "100", "--minutes", "2",
        "--seconds", "30", "--workers", "1", timeout_s=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "soak.json").read_text())
    for row in data["rows"]:
        delivered, expected = (int(x.replace(",", "")) for x in row["delivered"].split(" / "))
        assert delivered == expected > 0, row
        assert not row["errors"], row
