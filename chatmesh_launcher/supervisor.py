"""A child process that `chatmesh dev` starts with itself, restarts when it dies, stops with itself.

The child is ready when it prints a line starting with the expected text (its other stdout lines
are passed on to dev's stdout; its stderr, the JSON logs, is dev's stderr). It runs in a session
of its own, so a Ctrl-C in dev's terminal reaches dev only and dev stops it in order; its stdin
is a pipe from dev, and a child that reads it to its end learns that dev is gone, even after a
kill -9 of dev. When it exits while dev runs it is started again after `restart_delay_s`,
doubled after each start that failed, up to `max_restart_delay_s`.

It is spawned by `subprocess.Popen` (vfork or posix_spawn), not the event loop's subprocess
support: uvloop forks, which runs gRPC's fork handlers and logs a line on every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)


class ChildFailed(RuntimeError):
    """The child exited, or said nothing, before it was ready."""


class _Running:
    """One start of the child: the process, its stdout as a stream, and its exit."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        transport: asyncio.ReadTransport,
    ) -> None:
        self.popen = popen
        self.stdout = stdout
        self._transport = transport
        # A thread waits for the exit (the event loop's child watcher is uvloop's or none).
        self._exit = asyncio.ensure_future(asyncio.to_thread(popen.wait))

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return not self._exit.done()

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    @classmethod
    async def spawn(cls, argv: Sequence[str], env: Mapping[str, str]) -> _Running:
        popen = subprocess.Popen(  # noqa: ASYNC220 (a vfork: see the module doc)
            list(argv),
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert popen.stdout is not None
        loop = asyncio.get_running_loop()
        stdout = asyncio.StreamReader()
        transport, _protocol = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout
        )
        return cls(popen, stdout, transport)

    def close_pipes(self) -> None:
        self._transport.close()
        if self.popen.stdin is not None:
            self.popen.stdin.close()


class SupervisedChild:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        ready_prefix: str,
        *,
        start_timeout_s: float = 60.0,
        stop_grace_s: float = 15.0,
        restart_delay_s: float = 0.5,
        max_restart_delay_s: float = 30.0,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._ready_prefix = ready_prefix
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._restart_delay_s = restart_delay_s
        self._max_restart_delay_s = max_restart_delay_s
        self._child: _Running | None = None
        self._watch: asyncio.Task[None] | None = None
        self._relay: asyncio.Task[None] | None = None
        self._stopping = False
        # The rest of the ready line (e.g. `metrics=<port>`), and how often the child started.
        self.ready_line = ""
        self.starts = 0

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    def set_env(self, **values: str) -> None:
        """Adds to the environment of the next start (what is known only once dev serves)."""
        self._env.update(values)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.running else None

    async def start(self) -> None:
        """Starts the child and waits until it is ready (raises ChildFailed if it is not)."""
        await self._spawn()
        self._watch = asyncio.create_task(self._keep_running(), name=f"{self.name} supervisor")

    async def _spawn(self) -> None:
        child = await _Running.spawn(self._argv, self._env)
        self._child = child
        self.starts += 1
        try:
            async with asyncio.timeout(self._start_timeout_s):
                while True:
                    raw = await child.stdout.readline()
                    if not raw:
                        code = await child.wait()
                        raise ChildFailed(f"{self.name} exited with {code} before it was ready")
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line.startswith(self._ready_prefix):
                        self.ready_line = line.removeprefix(self._ready_prefix).strip()
                        break
                    _echo(line)
        except BaseException:
            await self._end(child)
            raise
        log.info("%s started (pid %d)", self.name, child.pid)
        self._relay = asyncio.create_task(_pass_on(child.stdout), name=f"{self.name} stdout")

    async def _keep_running(self) -> None:
        delay = self._restart_delay_s
        while True:
            child = self._child
            assert child is not None
            code = await child.wait()
            if self._stopping:
                return
            child.close_pipes()
            log.warning(
                "%s (pid %d) exited with %s; starting it again in %.1f s",
                self.name,
                child.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            try:
                await self._spawn()
            except ChildFailed as exc:
                log.error("%s", exc)
                delay = min(delay * 2, self._max_restart_delay_s)
                continue
            delay = self._restart_delay_s

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; idempotent."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._child is not None:
            await self._end(self._child)
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None

    async def _end(self, child: _Running) -> None:
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_grace_s):
                    await child.wait()
            except TimeoutError:
                log.warning("%s did not stop in %.0f s; killed", self.name, self._stop_grace_s)
                with contextlib.suppress(ProcessLookupError):
                    child.popen.kill()
                await child.wait()
        child.close_pipes()


def _echo(line: str) -> None:
    print(line, flush=True)


async def _pass_on(stream: asyncio.StreamReader) -> None:
    while raw := await stream.readline():
        _echo(raw.decode(errors="replace").rstrip("\n"))


def child_argv(module: str) -> list[str]:
    """This interpreter running `module`, as `python -m`."""
    return [sys.executable, "-m", module]


def stop_when_parent_is_gone() -> None:
    """In the child: SIGTERM to itself once stdin (the pipe from dev) ends, as it does when dev
    stops or is killed; the runner then stops the service as on a Ctrl-C."""

    def watch() -> None:
        # The raw fd: a daemon thread blocked in sys.stdin's buffered reader aborts the
        # interpreter's exit.
        while os.read(0, 4096):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
