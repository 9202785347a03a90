"""Finding server executables for tests, and the policy when one is missing.

Policy: in CI (env CI=true) a missing server is a test failure, never a skip, so a broken
install step cannot turn into a green run that tested nothing. Locally it is a skip.
The search and the process runner are the cluster launcher's (chatmesh_launcher/cluster/).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NoReturn

import pytest

from chatmesh_launcher.cluster.binaries import (
    INSTALL_HINTS,
    extra_dirs_to_search,
    find_binary,
    install_hint,
)
from chatmesh_launcher.cluster.server_process import (
    ServerExitedError,
    ServerProcess,
    ServerStartError,
    read_line,
)

__all__ = [
    "INSTALL_HINTS",
    "ServerExitedError",
    "ServerProcess",
    "ServerStartError",
    "extra_dirs_to_search",
    "find_binary",
    "in_ci",
    "read_line",
    "require_binary",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_binary(
    name: str, marker: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()
) -> str:
    """Path to executable `name`; if missing, fail the test in CI and skip it elsewhere."""
    extra_dirs = list(extra_dirs)
    path = find_binary(name, extra_dirs)
    if path:
        return path
    where = ", ".join(["PATH", *extra_dirs_to_search(extra_dirs)])
    msg = (
        f"`{name}` not found (looked in {where}); @pytest.mark.{marker} tests need it:"
        f" {install_hint(name)}."
    )
    server_unavailable(msg)


def server_unavailable(msg: str) -> NoReturn:
    """The policy for a server a test needs and this machine cannot run: a failure in CI, a
    skip elsewhere."""
    if in_ci():
        pytest.fail(f"{msg} In CI a missing server is a failure, not a skip.", pytrace=False)
    pytest.skip(msg)
