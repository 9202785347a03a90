"""`up`'s directory: refused while its cluster runs, emptied once that cluster stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatmesh_launcher.cluster.liveness import start_ticks
from chatmesh_launcher.cluster.state import ClusterState, Component, save_state
from chatmesh_launcher.cluster.up import ClusterError, prepare_directory

pytestmark = pytest.mark.timeout(10)


def test_a_directory_whose_cluster_runs_is_refused(tmp_path: Path) -> None:
    """A recorded process that still runs (here: this test's own) makes `up` refuse."""
    me = Component("chat-1", os.getpid(), "127.0.0.1:1", "", start_ticks=start_ticks(os.getpid()))
    save_state(ClusterState(directory=str(tmp_path), components=(me,)))
    with pytest.raises(ClusterError, match="cluster down --dir"):
        prepare_directory(tmp_path)
    assert (tmp_path / "state.json").exists()


def test_a_stopped_cluster_directory_starts_empty(tmp_path: Path) -> None:
    """When every recorded process is gone, the old data and logs are removed."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stopped = Component("x", gone.pid, "", "")
    save_state(ClusterState(directory=str(tmp_path), components=(stopped,)))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old.log").write_text("old")
    prepare_directory(tmp_path)
    assert list(tmp_path.iterdir()) == []
