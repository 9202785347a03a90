"""A single-node Apache Cassandra 5.0 CQL server: for tests, and for `chatmesh cluster up`.

Cassandra stands in for ScyllaDB: CI has Java 17 and Maven but no Docker and no
internet beyond package registries, so the server is assembled from Maven Central.
``cassandra-pom.xml`` beside this module resolves ``cassandra-all`` and its runtime
dependencies (cached in ``~/.m2``); the resulting classpath is cached under
``~/.cache/chatmesh/cassandra-<version>/`` and ``CassandraDaemon`` is run directly,
with a generated loopback-only ``cassandra.yaml`` in its work dir (a temp dir unless given).

Usage::

    server = CassandraServer()
    server.start()          # blocks until a real CQL query succeeds
    ...                     # connect to server.host:server.port, local DC server.datacenter
    server.stop()           # SIGTERM, then SIGKILL; removes the temp dir

The session fixture `cassandra_server` in tests/conftest.py starts one per run (a missing JVM or
Maven fails in CI and skips locally, like tests/servers/binaries.py).

Manual use: ``python -m chatmesh_launcher.cluster.cassandra`` starts one and waits for Ctrl-C;
``python -m chatmesh_launcher.cluster.cassandra --resolve`` only fetches the jars (a CI warm-up
step, so a test's timeout never has to cover Maven downloading ~90 MB).

Raises ``CassandraUnavailable`` when ``java``/``mvn`` are missing or the jars cannot
be resolved (tests may skip on it) and ``CassandraStartError`` when the server
itself fails (tests should fail on it).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from . import maven
from .maven import JavaUnavailable, log_tail
from .ports import free_port

# Keep in step with <cassandra.version> in cassandra-pom.xml (passed to Maven as -D too).
CASSANDRA_VERSION = "5.0.9"
POM = Path(__file__).resolve().parent / "cassandra-pom.xml"
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

# From Cassandra's conf/jvm17-server.options (JPMS section): without these, Java 17
# refuses the reflective access Cassandra, jamm, Chronicle and Netty rely on.
JAVA17_MODULE_FLAGS: tuple[str, ...] = (
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
        )
    ),
)

# Small, quiet JVM for a 2-core CI box. Serial GC: one GC thread instead of G1's
# worker pools, lowest RSS, and pauses on a 1 GiB heap are short enough for tests.
# C1-only JIT: Cassandra's startup is dominated by class loading and cold code, and
# C2 compiler threads would fight the test process for the two cores (measured:
# same startup time, half the JVM CPU time for a DDL + LWT + 2k-insert workload).
JVM_TUNING_FLAGS: tuple[str, ...] = (
    # Cassandra mlockall()s the JVM at startup, which makes every committed page of
    # the heap resident (as root, RLIMIT_MEMLOCK doesn't stop it): keep -Xms small
    # so an idle node costs ~130 MiB of heap instead of all of it.
    "-Xms128m",
    "-Xss256k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+PerfDisableSharedMem",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Djava.awt.headless=true",
    "-Djdk.attach.allowAttachSelf=true",
    # From jvm17-server.options: let Netty use Unsafe for direct buffers. Its other
    # two Netty lines (maxOrder=11, caches for all threads) are throughput tweaks that
    # cost ~60 MiB of direct memory in 16 MiB chunks; Netty's defaults are used instead.
    "-Dio.netty.tryReflectionSetAccessible=true",
)

# Startup knobs that only make sense for a disposable single node.
CASSANDRA_TEST_PROPERTIES: tuple[str, ...] = (
    "-Dcassandra-foreground=yes",  # don't close stdout/stderr
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",  # no peers to wait for
    "-Dcassandra.ring_delay_ms=100",  # default 30 s of waiting on ring changes
    "-Dcassandra.load_ring_state=false",
    "-Dcassandra.unsafesystem=true",  # no fsync for system tables: faster schema changes
    "-Dcassandra.shutdown_announce_in_ms=0",  # default sleeps 2 s on SIGTERM for peers
)

LOGBACK_XML = """<configuration scan="false">
  <!-- Everything goes to stdout, which the harness redirects to a file. -->
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

# CassandraDaemon logs this after the CQL port is bound (our logback pattern: "%logger{0} - ").
_STARTED = "CassandraDaemon - Startup complete"
_FATAL = re.compile(r"Exception encountered during startup|Fatal configuration error")
_BIND_ERRORS = re.compile(r"Address already in use|BindException|is in use by another process")


class CassandraUnavailable(JavaUnavailable):
    """Prerequisites (java 17+, mvn, Maven Central or a warm ~/.m2) are missing."""


class CassandraStartError(RuntimeError):
    """The server process died or did not become ready in time."""


def cache_dir(version: str = CASSANDRA_VERSION) -> Path:
    return maven.cache_dir(f"cassandra-{version}")


def find_java() -> str:
    """Path of a Java 17+ ``java`` (JAVA_HOME first, then PATH)."""
    try:
        return maven.find_java("Cassandra 5.0 here")
    except JavaUnavailable as e:
        raise CassandraUnavailable(str(e)) from e


def resolve_classpath(version: str = CASSANDRA_VERSION) -> list[str]:
    """Jar paths for cassandra-all ``version``, resolved by Maven once and then cached
    (re-resolved when the pom changes or a cached jar has vanished from ~/.m2)."""
    try:
        return maven.resolve_classpath(
            POM, f"cassandra-{version}", f"cassandra-all {version}", {"cassandra.version": version}
        )
    except JavaUnavailable as e:
        raise CassandraUnavailable(str(e)) from e


class CassandraServer:
    """One disposable Cassandra node on 127.0.0.1 with free ports and a temp data dir.

    With `work_dir` the node lives there instead (emptied first), and with `stop_at_exit=False`
    it outlives this process: `chatmesh cluster up` starts it and `down` stops it by pid.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        version: str = CASSANDRA_VERSION,
        heap: str = "1g",
        startup_timeout: float = 180.0,
        jmx: bool = False,
        extra_config: Mapping[str, object] | None = None,
        work_dir: Path | None = None,
        stop_at_exit: bool = True,
    ) -> None:
        self.version = version
        self._given_work_dir = work_dir
        self._stop_at_exit = stop_at_exit
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.jmx = jmx  # off by default: nothing in the tests needs nodetool
        self.extra_config = dict(extra_config or {})
        self.port = 0  # native transport (CQL)
        self.storage_port = 0
        self.jmx_port: int | None = None
        self.datacenter = "datacenter1"  # SimpleSnitch's name; confirmed from system.local
        self.release_version = ""
        self.work_dir: Path | None = None  # temp root: conf, log, storage
        self.data_dir: Path | None = None  # Cassandra's storage dir inside work_dir
        self.log_file: Path | None = None
        self.command: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("CassandraServer already started")
        java = find_java()
        classpath = resolve_classpath(self.version)
        if self._stop_at_exit:
            atexit.register(self.stop)
        try:
            for attempt in range(3):
                self._launch(java, classpath)
                try:
                    self._wait_ready()
                    return
                except CassandraStartError:
                    log = self.log_file.read_text(errors="replace") if self.log_file else ""
                    if attempt == 2 or not _BIND_ERRORS.search(log):
                        raise
                # Another process took a port between free_port() and bind: retry.
                self._kill()
                if self.work_dir is not None:
                    shutil.rmtree(self.work_dir, ignore_errors=True)
        except BaseException:
            self._kill()  # a failed node's graceful shutdown only adds seconds
            self.stop(keep_dir=True)  # keep the full log for whoever reads the error
            raise

    def stop(self, *, keep_dir: bool = False) -> None:
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGTERM runs Cassandra's shutdown hook (drain, flush); SIGKILL if it hangs.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if self.work_dir is not None and not keep_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = self.data_dir = self.log_file = None

    def __enter__(self) -> CassandraServer:
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
        root = self._fresh_work_dir()
        self.work_dir, self.data_dir, self.log_file = root, root / "storage", root / "cassandra.log"
        # free_port() races with other processes; start() retries on a bind failure.
        self.port, self.storage_port = free_port(self.host), free_port(self.host)
        self.jmx_port = free_port(self.host) if self.jmx else None

        (root / "tmp").mkdir()
        (root / "triggers").mkdir()
        config_file = root / "cassandra.yaml"
        # JSON is valid YAML, so no YAML library is needed to write the config.
        config_file.write_text(json.dumps(self._config(), indent=2) + "\n")
        logback = root / "logback.xml"
        logback.write_text(LOGBACK_XML)

        jamm = [j for j in classpath if os.path.basename(j).startswith("jamm-")]
        self.command = [
            java,
            *JVM_TUNING_FLAGS,
            f"-Xmx{self.heap}",
            *JAVA17_MODULE_FLAGS,
            # jamm measures object sizes for memtable accounting (as bin/cassandra does).
            *(f"-javaagent:{j}" for j in jamm[:1]),
            f"-Dcassandra.config={config_file.as_uri()}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={root}",
            # Netty/Snappy unpack native libs into java.io.tmpdir: keep them in our dir.
            f"-Djava.io.tmpdir={root / 'tmp'}",
            f"-Dcassandra.triggers_dir={root / 'triggers'}",  # else a WARN every minute
            f"-Dlogback.configurationFile={logback}",
            *CASSANDRA_TEST_PROPERTIES,
            # Without either JMX property Cassandra just logs that JMX is off.
            *([f"-Dcassandra.jmx.local.port={self.jmx_port}"] if self.jmx_port else []),
            "-cp",
            os.pathsep.join(classpath),
            MAIN_CLASS,
        ]
        # glibc makes up to 8 malloc arenas per core; Cassandra's own script caps them at 4.
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        with open(self.log_file, "wb") as log:  # a file, not a pipe: a pipe could fill and block
            self._proc = subprocess.Popen(
                self.command,
                cwd=root,  # hs_err/heap dumps land in the temp dir
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not the JVM
            )

    def _fresh_work_dir(self) -> Path:
        if self._given_work_dir is None:
            return Path(tempfile.mkdtemp(prefix="chatmesh-cassandra-"))
        shutil.rmtree(self._given_work_dir, ignore_errors=True)
        self._given_work_dir.mkdir(parents=True)
        return self._given_work_dir

    def _config(self) -> dict[str, object]:
        assert self.data_dir is not None
        d = self.data_dir
        config: dict[str, object] = {
            "cluster_name": "chatmesh-test",
            "num_tokens": 1,  # one node, one range: cheapest token metadata and range scans
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "endpoint_snitch": "SimpleSnitch",
            "seed_provider": [
                {
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": f"{self.host}:{self.storage_port}"}],
                }
            ],
            "listen_address": self.host,
            "rpc_address": self.host,
            "storage_port": self.storage_port,
            "native_transport_port": self.port,
            "start_native_transport": True,
            "commitlog_sync": "periodic",  # mandatory; periodic avoids an fsync per write
            "commitlog_sync_period": "10000ms",
            "data_file_directories": [str(d / "data")],
            "commitlog_directory": str(d / "commitlog"),
            "saved_caches_directory": str(d / "saved_caches"),
            "hints_directory": str(d / "hints"),
            "cdc_raw_directory": str(d / "cdc_raw"),
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
            # A fresh node has nothing to stay compatible with; enables all 5.0 features.
            "storage_compatibility_mode": "NONE",
            # Tests TRUNCATE/DROP a lot; snapshots would make each of those slow.
            "auto_snapshot": False,
            # ScyllaDB has materialized views on by default; Cassandra needs them enabled.
            "materialized_views_enabled": True,
            # Fewer threads and less contention on a 2-core box.
            "concurrent_reads": 4,
            "concurrent_writes": 4,
            "concurrent_counter_writes": 4,
            "concurrent_materialized_view_writes": 4,
            "concurrent_compactors": 1,
            "memtable_flush_writers": 1,
            # Generous timeouts: a loaded CI box must not turn into flaky Timeout errors.
            "read_request_timeout": "10000ms",
            "range_request_timeout": "20000ms",
            "write_request_timeout": "10000ms",
            "counter_write_request_timeout": "10000ms",
            "cas_contention_timeout": "5000ms",
            "request_timeout": "20000ms",
        }
        config.update(self.extra_config)
        return config

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.log_file is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        started = False  # has the log said the CQL port is open?
        pending = ""  # a log line not yet complete
        with open(self.log_file, "rb") as log:
            while time.monotonic() < deadline:
                code = self._proc.poll()
                if code is not None:
                    raise CassandraStartError(
                        f"Cassandra exited with code {code} during startup; "
                        f"log {self.log_file}:\n{log_tail(self.log_file)}"
                    )
                lines, _, pending = (pending + log.read().decode(errors="replace")).rpartition("\n")
                # A fatal startup error is followed by a graceful shutdown that takes
                # seconds (~8 s when the CQL port is taken): fail on the log line instead.
                if _FATAL.search(lines):
                    time.sleep(0.5)  # let the stack trace reach the log
                    raise CassandraStartError(
                        f"Cassandra failed during startup; log {self.log_file}:\n"
                        f"{log_tail(self.log_file)}"
                    )
                # Probe only once Cassandra says it is up: before that, a connect can
                # only fail, or hang on whatever other process holds the port.
                started = started or _STARTED in lines
                if not started:
                    time.sleep(0.25)
                    continue
                try:
                    self._probe_cql()
                    return
                except Exception as e:  # driver raises many types (NoHostAvailable, ...)
                    last_error = e
                    time.sleep(1)
        why = f"last CQL error: {last_error!r}" if started else f"no {_STARTED!r} in the log"
        raise CassandraStartError(
            f"Cassandra not ready after {self.startup_timeout:.0f}s ({why}); "
            f"log {self.log_file}:\n{log_tail(self.log_file)}"
        )

    def _probe_cql(self) -> None:
        """A real CQL round trip with the ScyllaDB driver the services use."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy

        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([self.host]), request_timeout=10
        )
        cluster = Cluster(
            contact_points=[self.host],
            port=self.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=5,
            control_connection_timeout=5,
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version, data_center FROM system.local").one()
            self.release_version, self.datacenter = row[0], row[1]
        finally:
            cluster.shutdown()


def main(argv: list[str]) -> int:
    """Manual use: start a server, print where it is, stop it on Ctrl-C or SIGTERM."""
    if argv[1:] == ["--resolve"]:
        jars = resolve_classpath()
        print(f"cassandra-all {CASSANDRA_VERSION}: {len(jars)} jars, cached in {cache_dir()}")
        return 0
    server = CassandraServer()
    return maven.run_in_foreground(
        server,
        "Cassandra",
        lambda took: (
            f"Cassandra {server.release_version} ready in {took:.1f}s on "
            f"{server.host}:{server.port} (datacenter {server.datacenter!r}, pid {server.pid})"
        ),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
