"""npm for the TypeScript tests: `npm ci` runs only when node_modules/ does not
match package-lock.json (a stamp of the lock's hash in node_modules/ says which lock it was
installed from)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "ts"


def stamp(package: Path) -> Path:
    return package / "node_modules" / ".chatmesh-lock-sha256"


def install(npm: str, package: Path, env: dict[str, str]) -> None:
    """`npm ci` in `package` unless its node_modules/ came from the same lock."""
    lock_hash = hashlib.sha256((package / "package-lock.json").read_bytes()).hexdigest()
    if not stamp(package).is_file() or stamp(package).read_text().strip() != lock_hash:
        run(npm, "ci", env=env, timeout_s=480, cwd=package)
        stamp(package).write_text(lock_hash + "\n")


def run(npm: str, *args: str, env: dict[str, str], timeout_s: float, cwd: Path = PACKAGE) -> None:
    done = subprocess.run(
        [npm, *args],
        cwd=cwd,
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
