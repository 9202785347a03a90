"""The TypeScript client SDK (clients/ts): its generated code is fresh and its Node tests pass.

`npm ci` runs only when node_modules/ does not match package-lock.json (a stamp of the lock's hash
in node_modules/ says which lock it was installed from). `npm test` builds with tsc and runs
`node --test`: unit tests against an in-memory transport and tests against a real `chatmesh dev`
started with this interpreter (CHATMESH_PYTHON).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.binaries import require_binary

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "ts"
STAMP = PACKAGE / "node_modules" / ".chatmesh-lock-sha256"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(npm: str, *args: str, env: dict[str, str], timeout_s: float) -> None:
    done = subprocess.run(
        [npm, *args],
        cwd=PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, (
        f"`npm {' '.join(args)}` exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-20000:]}\n--- stderr\n{done.stderr[-10000:]}"
    )


@pytest.fixture(scope="module")
def npm_env() -> tuple[str, dict[str, str]]:
    node = require_binary("node", "slow")
    npm = require_binary("npm", "slow")
    env = dict(os.environ)
    # npm scripts find node on PATH; the dev server is started with this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(node).parent), env.get("PATH", "")])
    env["CHATMESH_PYTHON"] = sys.executable
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    lock_hash = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.is_file() or STAMP.read_text().strip() != lock_hash:
        run(npm, "ci", env=env, timeout_s=480)
        STAMP.write_text(lock_hash + "\n")
    return npm, env


def test_generated_code_is_fresh(npm_env: tuple[str, dict[str, str]]) -> None:
    npm, env = npm_env
    run(npm, "run", "check:gen", env=env, timeout_s=120)


def test_node_tests_pass(npm_env: tuple[str, dict[str, str]]) -> None:
    npm, env = npm_env
    run(npm, "test", env=env, timeout_s=240)
