"""The Makefile's `help` names every phony target, and `make test` runs the checks CI relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def phony_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (line,) = re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    return set(line.split())


def test_help_lists_every_target() -> None:
    listed = set(re.findall(r"^make (\S+)", make("help"), flags=re.MULTILINE))
    assert listed == phony_targets()


def test_make_test_runs_every_check() -> None:
    steps = make("-s", "--eval=print-steps: ; @echo $(TEST_STEPS)", "print-steps").split()
    assert {"check-constraints", "lint", "breaking", "check-gen", "typecheck", "pytest"} <= set(
        steps
    )
    lint = make("-n", "lint")
    checks = ("ruff check", "ruff format --check", "buf lint", "lint-imports", "import_cycles")
    for check in checks:
        assert check in lint, lint
