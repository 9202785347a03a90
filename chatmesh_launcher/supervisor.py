"""A child process that `chatmesh dev` starts with itself, restarts when it dies, stops with itself.

The child is ready when it prints a line starting with the expected text (its other stdout lines
are passed on to dev's stdout; its stderr, the JSON logs, is dev's stderr). It runs in a session
of its own, so a Ctrl-C in dev's terminal reaches dev only and dev stops it in order; its stdin
is a pipe from dev, and a child that reads it to its end learns that dev is gone, even after a
kill -9 of dev. When it exits while dev runs it is started again after `restart_delay_s`,
doubled after each start that failed, up to `max_restart_delay_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)


class ChildFailed(RuntimeError):
    """The child exited, or said nothing, before it was ready."""


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
        self._process: asyncio.subprocess.Process | None = None
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
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Starts the child and waits until it is ready (raises ChildFailed if it is not)."""
        await self._spawn()
        self._watch = asyncio.create_task(self._keep_running(), name=f"{self.name} supervisor")

    async def _spawn(self) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._argv,
            env=self._env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._process = process
        self.starts += 1
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout_s):
                while True:
                    raw = await process.stdout.readline()
                    if not raw:
                        code = await process.wait()
                        raise ChildFailed(f"{self.name} exited with {code} before it was ready")
                    line = raw.decode(errors="replace").rstrip("\n")
                    if line.startswith(self._ready_prefix):
                        self.ready_line = line.removeprefix(self._ready_prefix).strip()
                        break
                    _echo(line)
        except BaseException:
            await self._end(process)
            raise
        log.info("%s started (pid %d)", self.name, process.pid)
        self._relay = asyncio.create_task(_pass_on(process.stdout), name=f"{self.name} stdout")

    async def _keep_running(self) -> None:
        delay = self._restart_delay_s
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            log.warning(
                "%s (pid %d) exited with %s; starting it again in %.1f s",
                self.name,
                process.pid,
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
        if self._process is not None:
            await self._end(self._process)
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_grace_s):
                    await process.wait()
            except TimeoutError:
                log.warning("%s did not stop in %.0f s; killed", self.name, self._stop_grace_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()


def _echo(line: str) -> None:
    print(line, flush=True)


async def _pass_on(stream: asyncio.StreamReader) -> None:
    while raw := await stream.readline():
        _echo(raw.decode(errors="replace").rstrip("\n"))


def child_argv(module: str) -> list[str]:
    """This interpreter running `module`, as `python -m`."""
    return [sys.executable, "-m", module]
