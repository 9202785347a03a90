"""Java servers assembled from Maven Central: finding a JDK, and a classpath resolved once.

There is no Docker here, so a Java server (Cassandra, the Solr test server) is a pom that
resolves its jars into ~/.m2 and a classpath file cached under ~/.cache/chatmesh/<name>/, keyed
by a hash of the pom so that editing it re-resolves.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class JavaUnavailable(RuntimeError):
    """Prerequisites (java 17+, mvn, Maven Central or a warm ~/.m2) are missing."""


def cache_dir(name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "chatmesh" / name


def find_java(what: str, *, binary: str = "java", minimum: int = 17) -> str:
    """Path of a Java `minimum`+ `binary` (java, javac; JAVA_HOME first, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / binary if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which(binary)
    if java is None:
        raise JavaUnavailable(
            f"`{binary}` not found (set JAVA_HOME or install a JDK {minimum}, "
            "e.g. `apt-get install openjdk-17-jdk-headless`)"
        )
    proc = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    out = proc.stderr + proc.stdout  # java says it on stderr, javac on stdout
    m = re.search(r'(?:version "|javac )(\d+)', out)
    if m is None or int(m.group(1)) < minimum:
        raise JavaUnavailable(f"{what} needs Java {minimum}; {java} says: {out.strip()}")
    return java


def resolve_classpath(
    pom: Path, name: str, what: str, properties: dict[str, str] | None = None
) -> list[str]:
    """Jar paths of `pom`'s runtime dependencies, resolved by Maven once and then cached.

    Re-resolved when the pom changes or a cached jar has vanished from ~/.m2.
    """
    pom_hash = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    cp_file = cache_dir(name) / f"classpath-{pom_hash}.txt"
    if cp_file.is_file():
        jars = cp_file.read_text().strip().split(os.pathsep)
        if jars and all(os.path.isfile(j) for j in jars):
            return jars

    mvn = shutil.which("mvn")
    if mvn is None:
        raise JavaUnavailable(
            f"`mvn` not found: it is needed once to fetch {what}'s jars from Maven Central "
            "(`apt-get install maven`)"
        )
    cp_file.parent.mkdir(parents=True, exist_ok=True)
    # Write to a private name then rename, so parallel test workers never read half a file.
    tmp = cp_file.with_name(f"{cp_file.name}.{os.getpid()}.tmp")
    cmd = [
        mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
        "dependency:build-classpath",
        *(f"-D{k}={v}" for k, v in (properties or {}).items()),
        f"-Dmdep.outputFile={tmp}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as e:
        raise JavaUnavailable(f"Maven timed out resolving {what}: {' '.join(cmd)}") from e
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise JavaUnavailable(f"Maven could not resolve {what} (exit {proc.returncode}):\n{out}")
    os.replace(tmp, cp_file)
    return cp_file.read_text().strip().split(os.pathsep)


def log_tail(path: Path | None, lines: int = 60) -> str:
    """The end of a Java server's log, without stack frames so the error messages fit."""
    try:
        text = path.read_text(errors="replace") if path is not None else ""
    except OSError:
        return "(no log)"
    kept = [ln for ln in text.splitlines() if not re.match(r"\s+(at |\.\.\. \d+ more)", ln)]
    return "\n".join(kept[-lines:]) or "(empty log)"


class ForegroundServer(Protocol):
    log_file: Path | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_running(self) -> bool: ...


def run_in_foreground(server: ForegroundServer, name: str, ready: Callable[[float], str]) -> int:
    """Manual use of a server module: start `server`, print `ready(seconds it took)` and its log,
    stop it on Ctrl-C or SIGTERM; 1 when it exits on its own."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.monotonic()
    try:
        server.start()
        print(
            f"{ready(time.monotonic() - t0)}\nlog: {server.log_file}\nCtrl-C to stop.",
            flush=True,
        )
        while server.is_running():
            time.sleep(1)
        print(f"{name} exited on its own; log:\n{log_tail(server.log_file)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
