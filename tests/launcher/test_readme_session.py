"""README's "A session" runs as written against a real `chatmesh dev`: the same commands, and
answers of the same shape (ids and times differ per run; the service list must match exactly)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.binaries import require_binary
from tests.servers.grpcurl import TOOLS
from tests.servers.services import REPO

from .conftest import Dev, command_env, dev_process

README_TARGET = "127.0.0.1:50051"


@dataclass
class Step:
    command: str
    expected: str


def session_steps() -> list[Step]:
    """The console block under "## A session": each `$ ` command (with its `\\` continuation
    lines) and the output printed after it."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## A session\n", 1)[1]
    block = re.search(r"```console\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README's session has no console block"
    steps: list[Step] = []
    lines = block.group(1).splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), lines[i]
        command = [lines[i][2:]]
        while command[-1].endswith("\\"):
            i += 1
            command.append(lines[i])
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        steps.append(Step("\n".join(command), "\n".join(output)))
    return steps


def as_run_here(command: str, dev: Dev, grpcurl: str) -> str:
    """The command for this dev: its address and data dir, this checkout's tools."""
    chatmesh = REPO / ".venv" / "bin" / "chatmesh"
    launcher = (
        shlex.quote(str(chatmesh))
        if chatmesh.exists()
        else (f"{shlex.quote(sys.executable)} -m chatmesh_launcher")
    )
    command = command.replace(".venv/bin/chatmesh", launcher)
    if " token " in command:
        command = command.replace(")", f" --data-dir {shlex.quote(str(dev.data_dir))})", 1)
    command = command.replace(README_TARGET, dev.grpc_target)
    return re.sub(r"(^|\s)grpcurl ", rf"\1{shlex.quote(grpcurl)} ", command)


def keys(value: Any) -> Any:
    """The shape of a JSON answer: its keys, nested, without the values."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    return None


@pytest.fixture
def fresh_dev(tmp_path: Path) -> Iterator[Dev]:
    """A dev of its own: the session creates alice and bob's direct conversation, which must
    not exist yet."""
    process = dev_process(tmp_path / "data")
    process.start(wait_s=60)
    try:
        yield Dev(process)
    finally:
        process.stop()


def test_the_readme_session_runs_as_written(fresh_dev: Dev) -> None:
    dev = fresh_dev
    grpcurl = require_binary("grpcurl", "grpcurl", [TOOLS])
    steps = session_steps()
    readme_conversation = re.search(r'"conversation_id": "(\w+)"', steps[3].expected)
    assert readme_conversation, "README's CreateConversation answer shows no conversation id"
    # Steps that print nothing set shell variables (`alice=$(...)`): each later step runs after
    # them in its own shell, so every command runs exactly once.
    setup = ""
    answers: list[str] = []
    for step in steps:
        command = as_run_here(step.command, dev, grpcurl)
        made = re.search(r'"conversation_id": "(\w+)"', "".join(answers))
        if made:
            command = command.replace(readme_conversation.group(1), made.group(1))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", setup + command],
            capture_output=True, text=True, env=command_env(), timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{step.command}\n{done.stderr[-2000:]}"
        if not step.expected.strip():
            assert not done.stdout.strip(), f"{step.command} printed {done.stdout!r}"
            setup += command + "\n"
        answers.append(done.stdout.strip())
    listed, created, sent = answers[2], answers[3], answers[4]
    assert listed.splitlines() == steps[2].expected.splitlines(), "grpcurl list differs"
    assert keys(json.loads(created)) == keys(json.loads(steps[3].expected))
    assert json.loads(created)["created"] is True
    assert keys(json.loads(sent)) == keys(json.loads(steps[4].expected))
    assert json.loads(sent)["message"]["body"] == "hello bob"
