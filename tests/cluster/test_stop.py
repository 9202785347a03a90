"""`down`'s stop: SIGTERM, SIGKILL after the grace period, and never a pid that was recycled."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatmesh_launcher.cluster.liveness import liveness, pid_alive, start_ticks
from chatmesh_launcher.cluster.state import Component
from chatmesh_launcher.cluster.stop import stop_components

pytestmark = pytest.mark.timeout(30)

_IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)"
    "; time.sleep(60)"
)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def _start(processes: list[subprocess.Popen[bytes]], code: str, grace_s: float) -> Component:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    processes.append(process)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return Component(
        f"p{process.pid}", process.pid, "127.0.0.1:1", "", start_ticks=start_ticks(process.pid),
        grace_s=grace_s,
    )  # fmt: skip


def test_a_process_that_ignores_sigterm_is_killed_after_its_grace(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """One exits on SIGTERM at once; the other ignores it and gets SIGKILL after its grace."""
    polite = _start(processes, "import time; print('ready', flush=True); time.sleep(60)", 5.0)
    stubborn = _start(processes, _IGNORES_SIGTERM, 0.5)
    reports: list[tuple[str, str]] = []
    began = time.monotonic()
    left = stop_components([polite, stubborn], lambda c, how: reports.append((c.name, how)))
    assert left == []
    assert sorted(reports) == sorted([(polite.name, "stopped"), (stubborn.name, "killed")])
    assert time.monotonic() - began < 5.0
    for process in processes:
        assert process.wait(5) is not None


def test_a_recycled_pid_is_never_signalled(processes: list[subprocess.Popen[bytes]]) -> None:
    """A recorded start time that differs from the running process's means another process now
    has the pid: it counts as down and is left alone."""
    running = _start(processes, "import time; print('ready', flush=True); time.sleep(60)", 1.0)
    recycled = Component(running.name, running.pid, "", "", start_ticks=running.start_ticks + 1)
    assert not pid_alive(recycled) and liveness(recycled) == "down"
    assert stop_components([recycled]) == []
    assert processes[0].poll() is None


def test_a_dead_pid_is_down(tmp_path: Path) -> None:
    """A process that exited (and was reaped) is down without any probe."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert liveness(Component("gone", process.pid, "127.0.0.1:1", "")) == "down"
