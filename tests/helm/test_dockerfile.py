"""The Dockerfile, read (no builder runs here): a builder and a slim runtime stage, every package
of the wheel copied in, a non-root user, `chatmesh` as the entrypoint."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.helm.chart import REPO

pytestmark = pytest.mark.helm

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    parsed: list[Instruction] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        parsed.append((keyword.upper(), " ".join(rest.split())))
    return parsed


def stages() -> list[tuple[str, list[Instruction]]]:
    found: list[tuple[str, list[Instruction]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", rest, re.I)
            assert match, f"every stage is named: FROM {rest}"
            found.append((match.group(2), []))
        elif found:
            found[-1][1].append((keyword, rest))
    return found


def test_a_builder_and_a_runtime_stage() -> None:
    names = [name for name, _ in stages()]
    assert len(names) >= 2
    _runtime, body = stages()[-1]
    copies = [rest for keyword, rest in body if keyword == "COPY"]
    assert any(rest.startswith(f"--from={names[0]} ") for rest in copies), "the venv is copied in"
    # The runtime stage installs nothing itself: no compiler, no pip.
    assert not any("pip install" in rest or "apt-get install" in rest for _, rest in body)


def test_runs_as_a_non_root_user_with_chatmesh_as_entrypoint() -> None:
    _runtime, body = stages()[-1]
    users = [rest for keyword, rest in body if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Numeric, so Kubernetes' runAsNonRoot can verify it.
    assert user.isdigit()
    entrypoints = [rest for keyword, rest in body if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["chatmesh"]


def test_every_package_of_the_wheel_is_copied() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        pattern.rstrip("*").rstrip(".") for pattern in include if "." not in pattern.rstrip(".*")
    }
    _builder, body = stages()[0]
    copied = {rest.split()[0].rstrip("/") for keyword, rest in body if keyword == "COPY"}
    for package in packages:
        where = "gen" if (REPO / "gen" / package).is_dir() else package
        assert where in copied, f"{package} ({where}/) is not copied into the builder"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".venv", ".git"):
        assert needed in ignored
    _builder, body = stages()[0]
    for keyword, rest in body:
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        for source in rest.split()[:-1]:
            source = source.rstrip("/")
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
