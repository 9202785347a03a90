"""A server child process on a port of 127.0.0.1, with a work dir, a log file and a readiness
probe: the base of every dependency the tests and `chatmesh cluster up` start."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .ports import free_port


class ServerStartError(RuntimeError):
    pass


class ServerExitedError(ServerStartError):
    """The process died during startup (typically: its port was taken)."""


class ServerProcess:
    """A server child process bound to 127.0.0.1:`port`, with a work dir and a log file.

    The port and work dir are chosen once, so `restart()` brings the server back at the same
    address with the same on-disk state. Subclasses give `argv()` and `probe()`.
    Blocking: from async tests use `await asyncio.to_thread(server.restart)`.
    """

    name = "server"
    # True: the child runs under setsid (its own process group), so it outlives this process
    # and a terminal's Ctrl-C or hangup (`chatmesh cluster up` starts what `down` stops later).
    detached = False

    def __init__(
        self,
        binary: str,
        workdir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        # free_port() can race with another process: until the first successful start, a
        # self-chosen port may be swapped for a new one. After that the port is fixed.
        self._port_fixed = port is not None
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def probe(self, sock: socket.socket) -> bool:
        """Given a fresh connection, True once the server is ready to serve."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                self._port_fixed = True
                return
            except ServerExitedError:
                if attempt == attempts - 1:
                    raise
                self.port = free_port(self.host)

    def _start_once(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")  # append: keep the log across restarts
        self._proc = subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.detached,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ServerExitedError(
                    f"{self.name} exited with {self._proc.returncode} during startup "
                    f"(port {self.port} taken?); log:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
                    sock.settimeout(2.0)
                    # Still ours? A foreign listener on a raced port could answer the probe.
                    if self.probe(sock) and self._proc.poll() is None:
                        return
            except (OSError, ValueError):  # not listening yet, or a garbled greeting
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} not ready on {self.host}:{self.port} after "
                    f"{self.startup_timeout}s; log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def read_line(sock: socket.socket, limit: int = 65536) -> bytes:
    """One CRLF-terminated line (without CRLF); b"" if the peer closed first."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            return b""
        buf += chunk
        if len(buf) > limit:
            raise OSError("line too long")
    return buf[:-2]
