"""Node and npm for the TypeScript tests (the SDK's and the examples')."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.servers.binaries import require_binary

from .npm import PACKAGE, install


@pytest.fixture(scope="package")
def npm_env() -> tuple[str, dict[str, str]]:
    node = require_binary("node", "slow")
    npm = require_binary("npm", "slow")
    env = dict(os.environ)
    # npm scripts find node on PATH; the dev server is started with this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(node).parent), env.get("PATH", "")])
    env["CHATMESH_PYTHON"] = sys.executable
    env.setdefault("npm_config_fund", "false")
    env.setdefault("npm_config_audit", "false")
    install(npm, PACKAGE, env)
    return npm, env
