"""The TypeScript client SDK (clients/ts): its generated code is fresh and its Node tests pass.

`npm test` builds with tsc and runs `node --test`: unit tests against an in-memory transport and
tests against a real `chatmesh dev` started with this interpreter (CHATMESH_PYTHON).
"""

from __future__ import annotations

import pytest

from .npm import run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_generated_code_is_fresh(npm_env: tuple[str, dict[str, str]]) -> None:
    npm, env = npm_env
    run(npm, "run", "check:gen", env=env, timeout_s=120)


def test_node_tests_pass(npm_env: tuple[str, dict[str, str]]) -> None:
    npm, env = npm_env
    run(npm, "test", env=env, timeout_s=240)
