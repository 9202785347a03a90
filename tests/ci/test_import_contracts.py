"""The import contracts of pyproject.toml ([tool.importlinter]) cover every package and can fail.

`make lint-imports` checks the real tree; these tests check the contracts themselves: each
top-level package is in the graph and in a layer, and a copy of the tree with one bad import
added (upward, sideways between services, or a cycle) breaks the contract that forbids it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def importlinter() -> dict[str, Any]:
    table = pyproject()["tool"]["importlinter"]
    assert isinstance(table, dict)
    return table


def contract(contract_id: str) -> dict[str, Any]:
    (found,) = [c for c in importlinter()["contracts"] if c["id"] == contract_id]
    assert isinstance(found, dict)
    return found


def test_every_installed_package_is_in_the_import_graph() -> None:
    """A package in the setuptools list but not in root_packages would go unchecked."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.split(".")[0].rstrip("*") for pattern in include}
    assert top_level == set(importlinter()["root_packages"])


def test_every_root_package_has_a_layer() -> None:
    layered = {
        name.strip().strip("()")
        for layer in contract("layers")["layers"]
        for name in layer.replace(":", "|").split("|")
    }
    assert set(importlinter()["root_packages"]) <= layered


def tree_copy(tmp_path: Path) -> Path:
    """The root packages (and the generated `chatmesh`) with pyproject.toml, in tmp_path."""
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in importlinter()["root_packages"]:
        source = ROOT / "gen" / name if name == "chatmesh" else ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, copy / "gen" / name if name == "chatmesh" else copy / name, ignore=ignore
            )
    shutil.copy(ROOT / "pyproject.toml", copy)
    return copy


def lint_imports(tree: Path, contract_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", "--contract", contract_id],
        cwd=tree,
        # Ahead of the editable install's finder: the copy is what gets analysed.
        env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'gen'}"},
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("contract_id", "probes", "complaint"),
    [
        pytest.param(
            "layers",
            {"chatmesh_common/probe.py": "import chat_service.config\n"},
            "chatmesh_common is not allowed to import chat_service",
            id="common-imports-a-service",
        ),
        pytest.param(
            "layers",
            {"chat_service/probe.py": "from presence_service import config\n"},
            "chat_service is not allowed to import presence_service",
            id="service-imports-a-service",
        ),
        pytest.param(
            "layers",
            {"gen/chatmesh/probe.py": "import chatmesh_common.clock\n"},
            "chatmesh is not allowed to import chatmesh_common",
            id="generated-imports-common",
        ),
        pytest.param(
            "acyclic",
            {
                # A function-level import closes the cycle too.
                "chatmesh_common/probe_a.py": "def f():\n    import chatmesh_common.probe_b\n",
                "chatmesh_common/probe_b.py": "from chatmesh_common import probe_a\n",
            },
            "No cycles are allowed in chatmesh_common",
            id="cycle-between-modules",
        ),
    ],
)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, contract_id: str, probes: dict[str, str], complaint: str
) -> None:
    tree = tree_copy(tmp_path)
    for path, source in probes.items():
        (tree / path).write_text(source)
    done = lint_imports(tree, contract_id)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "BROKEN" in done.stdout and complaint in done.stdout, done.stdout + done.stderr
    assert "probe" in done.stdout


def test_a_cycle_through_a_package_init_fails_the_module_check(tmp_path: Path) -> None:
    """The acyclic contract compares siblings only; scripts/check_import_cycles.py sees a
    package re-exporting from a submodule that imports the package."""
    tree = tree_copy(tmp_path)
    package = tree / "chatmesh_common" / "probe"
    package.mkdir()
    (package / "__init__.py").write_text("from chatmesh_common.probe.impl import X\nY = 1\n")
    (package / "impl.py").write_text("from chatmesh_common.probe import Y\nX = Y\n")
    assert lint_imports(tree, "acyclic").returncode == 0
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_import_cycles.py")],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    cycle = "chatmesh_common.probe -> chatmesh_common.probe.impl -> chatmesh_common.probe"
    assert f"import cycle: {cycle}" in done.stdout
