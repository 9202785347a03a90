"""A throwaway one-node Apache Solr 9 in SolrCloud mode (embedded ZooKeeper) for tests.

Solr is assembled from Maven Central like the Cassandra stand-in: ``tests/servers/solr/pom.xml``
resolves ``solr-test-framework`` (solr-core, Jetty, ZooKeeper) into ``~/.m2``, and
``tests/servers/solr/SolrCloudMain.java`` is compiled against that classpath once (cached under
``~/.cache/chatmesh/solr-<version>/``). It starts a ``MiniSolrCloudCluster`` of one node on a
port from tests/servers/ports.py, ZooKeeper on a port of its own, state in a temp dir, and
uploads search_service's configset before it says it is ready.

Usage::

    server = SolrServer()
    server.start()          # blocks until the node answers CLUSTERSTATUS with itself live
    ...                     # SolrEngine(server.url, ...)
    server.stop()           # SIGTERM, then SIGKILL; removes the temp dir

The session fixture `solr_server` in tests/conftest.py starts one per run (a missing JVM or
Maven fails in CI and skips locally, like servers.binaries).

Manual use: ``python -m tests.servers.solr`` starts one and waits for Ctrl-C;
``python -m tests.servers.solr --resolve`` only fetches the jars and compiles the starter
(a CI warm-up step, so a test's timeout never covers Maven downloading ~150 MB).

Raises ``SolrUnavailable`` when ``java``/``javac``/``mvn`` are missing or the jars cannot be
resolved (tests may skip on it) and ``SolrStartError`` when the server itself fails (tests
should fail on it).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from chatmesh_launcher.cluster.maven import (
    JavaUnavailable,
    cache_dir,
    find_java,
    log_tail,
    resolve_classpath,
    run_in_foreground,
)
from search_service.engines.solr import CONFIGSET_DIR

from .ports import free_port

# Keep in step with <solr.version> in solr/pom.xml (passed to Maven as -D too).
SOLR_VERSION = "9.10.1"
HERE = Path(__file__).resolve().parent / "solr"
POM = HERE / "pom.xml"
MAIN_SOURCE = HERE / "SolrCloudMain.java"
MAIN_CLASS = "SolrCloudMain"
# The name the starter uploads search_service's configset under (the engine's default).
CONFIGSET = "chatmesh-messages"

# Small, quiet JVM for a 2-core CI box (as for Cassandra): serial GC, C1 only.
JVM_FLAGS: tuple[str, ...] = (
    "-Xms64m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+PerfDisableSharedMem",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Djava.awt.headless=true",
    "-Dhost=127.0.0.1",
)

LOG4J2_XML = """<Configuration status="WARN">
  <!-- Everything goes to stdout, which the harness redirects to a file. -->
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="%-5p [%t] %d{ISO8601} %c{1} - %m%n"/>
    </Console>
  </Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="STDOUT"/></Root></Loggers>
</Configuration>
"""

_READY = re.compile(r"^SOLR_READY (\S+) (\S+)$", re.MULTILINE)
_FAILED = "SOLR_FAILED"
_BIND_ERRORS = re.compile(r"Address already in use|BindException|Failed to bind")


class SolrUnavailable(JavaUnavailable):
    """Prerequisites (java 17+, javac, mvn, Maven Central or a warm ~/.m2) are missing."""


class SolrStartError(RuntimeError):
    """The server process died or did not become ready in time."""


def _cache(version: str) -> Path:
    return cache_dir(f"solr-{version}")


def resolve(version: str = SOLR_VERSION) -> tuple[list[str], Path]:
    """The jars of solr-test-framework `version` and the dir of the compiled starter class."""
    try:
        classpath = resolve_classpath(
            POM, f"solr-{version}", f"solr-test-framework {version}", {"solr.version": version}
        )
        javac = find_java("Solr 9", binary="javac")
    except JavaUnavailable as e:
        raise SolrUnavailable(str(e)) from e
    digest = hashlib.sha256(MAIN_SOURCE.read_bytes() + POM.read_bytes()).hexdigest()[:12]
    classes = _cache(version) / f"main-{digest}"
    if (classes / f"{MAIN_CLASS}.class").is_file():
        return classpath, classes
    # Compiled into a private dir then renamed, so parallel workers never see half of it.
    tmp = Path(tempfile.mkdtemp(prefix="main-", dir=_cache(version)))
    argfile = tmp / "javac.args"
    argfile.write_text(f'-cp "{os.pathsep.join(classpath)}"\n')
    proc = subprocess.run(
        [javac, "-d", str(tmp), f"@{argfile}", str(MAIN_SOURCE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SolrUnavailable(f"javac could not compile {MAIN_SOURCE}:\n{proc.stderr}")
    argfile.unlink()
    try:
        os.replace(tmp, classes)
    except OSError:  # another worker got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return classpath, classes


class SolrServer:
    """One disposable SolrCloud node on 127.0.0.1 with a free port and a temp dir."""

    host = "127.0.0.1"

    def __init__(
        self, *, version: str = SOLR_VERSION, heap: str = "512m", startup_timeout: float = 120.0
    ) -> None:
        self.version = version
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.port = 0
        self.url = ""  # base URL, e.g. http://127.0.0.1:PORT/solr
        self.zk_address = ""
        self.configset = CONFIGSET
        self.work_dir: Path | None = None
        self.log_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("SolrServer already started")
        try:
            java = find_java("Solr 9")
        except JavaUnavailable as e:
            raise SolrUnavailable(str(e)) from e
        classpath, classes = resolve(self.version)
        atexit.register(self.stop)
        try:
            for attempt in range(3):
                self._launch(java, [*classpath, str(classes)])
                try:
                    self._wait_ready()
                    return
                except SolrStartError:
                    log = self.log_file.read_text(errors="replace") if self.log_file else ""
                    if attempt == 2 or not _BIND_ERRORS.search(log):
                        raise
                # Another process took the port between free_port() and bind: retry.
                self._kill()
                if self.work_dir is not None:
                    shutil.rmtree(self.work_dir, ignore_errors=True)
        except BaseException:
            self._kill()
            self.stop(keep_dir=True)  # keep the full log for whoever reads the error
            raise

    def stop(self, *, keep_dir: bool = False) -> None:
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM runs the starter's shutdown hook (Solr, then ZooKeeper); SIGKILL if it hangs.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if self.work_dir is not None and not keep_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = self.log_file = None

    def __enter__(self) -> SolrServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- internals -------------------------------------------------------------

    def _launch(self, java: str, classpath: list[str]) -> None:
        root = Path(tempfile.mkdtemp(prefix="chatmesh-solr-"))
        self.work_dir, self.log_file = root, root / "solr.log"
        self.port = free_port(self.host)  # races with other processes; start() retries
        (root / "tmp").mkdir()
        log4j = root / "log4j2.xml"
        log4j.write_text(LOG4J2_XML)
        # The classpath goes in an argument file: 140 jar paths would bury `ps` output.
        argfile = root / "java.args"
        argfile.write_text(f'-cp "{os.pathsep.join(classpath)}"\n')
        command = [
            java,
            *JVM_FLAGS,
            f"-Xmx{self.heap}",
            f"-Djava.io.tmpdir={root / 'tmp'}",
            f"-Dsolr.log.dir={root}",
            f"-Dlog4j2.configurationFile={log4j}",
            f"@{argfile}",
            MAIN_CLASS,
            str(self.port),
            str(root / "cluster"),
            str(CONFIGSET_DIR),
            self.configset,
        ]
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        with open(self.log_file, "wb") as log:  # a file, not a pipe: a pipe could fill and block
            self._proc = subprocess.Popen(
                command,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not the JVM
            )

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.log_file is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            text = self.log_file.read_text(errors="replace")
            if code is not None or _FAILED in text:
                raise SolrStartError(
                    f"Solr failed during startup (exit {code}); log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}"
                )
            ready = _READY.search(text)
            if ready is None:
                time.sleep(0.25)
                continue
            self.url, self.zk_address = ready.group(1), ready.group(2)
            try:
                self._probe()
                return
            except (OSError, ValueError, KeyError) as e:
                last_error = e
                time.sleep(0.5)
        raise SolrStartError(
            f"Solr not ready after {self.startup_timeout:.0f}s (last error: {last_error!r}); "
            f"log {self.log_file}:\n{log_tail(self.log_file)}"
        )

    def _probe(self) -> None:
        """A real request: the cluster's state lists this node as live."""
        url = f"{self.url}/admin/collections?action=CLUSTERSTATUS&wt=json"
        with urllib.request.urlopen(url, timeout=10) as response:
            status = json.load(response)
        live = status["cluster"]["live_nodes"]
        if f"{self.host}:{self.port}_solr" not in live:
            raise ValueError(f"this node is not live yet: {live}")


def main(argv: list[str]) -> int:
    """Manual use: start a server, print where it is, stop it on Ctrl-C or SIGTERM."""
    if argv[1:] == ["--resolve"]:
        jars, classes = resolve()
        print(f"solr-test-framework {SOLR_VERSION}: {len(jars)} jars, starter in {classes}")
        return 0
    server = SolrServer()
    return run_in_foreground(
        server,
        "Solr",
        lambda took: (
            f"SolrCloud {SOLR_VERSION} ready in {took:.1f}s at {server.url} "
            f"(ZooKeeper {server.zk_address}, configset {server.configset!r}, pid {server.pid})"
        ),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
