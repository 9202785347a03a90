"""The outbound side of one socket: a bounded queue of encoded frames and the task that writes it.

Nothing that produces frames (request tasks, the event stream, the presence link) ever waits on
a slow client: `emit()` only queues. A queue past `outbound_queue_max`, or one write blocked for
`send_stall_timeout_s`, closes the socket with 4008 (slow consumer); the app reconnects and
resumes. The writer task runs while there is traffic and is retired after a heartbeat interval
without output, so an idle socket holds no task. Closing goes through here too, so a close that
flushes (abuse, authentication) is written after the frames queued before it.
"""

from __future__ import annotations

import asyncio
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from gateway_ws.config import GatewayConfig
from gateway_ws.frames import Encoded

# The client does not read fast enough: it reconnects and resumes.
CLOSE_SLOW_CONSUMER: Final = 4008


class Writer:
    """One socket's outbound queue and writer task."""

    __slots__ = (
        "_batch",
        "_close_task",
        "_config",
        "_idle_since",
        "_loop",
        "_out",
        "_send_started",
        "_wakeup",
        "_ws",
        "closing",
        "task",
    )

    def __init__(self, ws: ServerConnection, config: GatewayConfig) -> None:
        self._ws = ws
        self._config = config
        self._loop = asyncio.get_running_loop()
        # Frames not taken by the writer yet, and how many of the batch it took are unsent.
        self._out: list[Encoded] = []
        self._batch = 0
        # Resolved True to wake the writer, False to retire it.
        self._wakeup: asyncio.Future[bool] | None = None
        # The writer task while there is one.
        self.task: asyncio.Task[None] | None = None
        # loop.time() when the current write started / the writer went idle; 0.0 when not.
        self._send_started = 0.0
        self._idle_since = 0.0
        # (code, reason, flush first) once the socket is to be closed.
        self.closing: tuple[int, str, bool] | None = None
        self._close_task: asyncio.Task[None] | None = None

    def emit(self, data: Encoded) -> None:
        """Queues a frame; never waits. Dropped once the socket is closing."""
        if self.closing is not None:
            return
        out = self._out
        out.append(data)
        if len(out) + self._batch > self._config.outbound_queue_max:
            self.request_close(CLOSE_SLOW_CONSUMER, "slow consumer", flush=False)
            return
        self._wake()

    def request_close(self, code: int, reason: str, flush: bool) -> None:
        """Closes the socket once: after the queued frames when `flush`, else right away."""
        if self.closing is not None:
            return
        self.closing = (code, reason, flush)
        if flush and (self.task is not None or self._out):
            self._wake()  # the writer writes what is queued, then closes
            return
        self._out.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():  # lets an idle writer return
            self._wakeup = None
            self._idle_since = 0.0
            wakeup.set_result(True)
        self._close_task = self._loop.create_task(self._close(code, reason))

    def sweep(self, now: float) -> None:
        """Called about every second by the gateway, for what would otherwise need a timer.

        A write blocked too long means the client stopped reading: close with 4008. A writer
        idle for a heartbeat interval is retired.
        """
        config = self._config
        started = self._send_started
        if started and now - started > config.send_stall_timeout_s:
            closing = self.closing
            if closing is None:
                self.request_close(CLOSE_SLOW_CONSUMER, "slow consumer", flush=False)
            elif closing[2] and now - started > config.send_stall_timeout_s * 2:
                # The flush before a close (abuse, auth) is stuck: nothing will get through.
                # A close without flush is bounded by close_timeout_s in _close().
                self._ws.transport.abort()
            return
        idle = self._idle_since
        if idle and now - idle > config.heartbeat_interval_s:
            wakeup = self._wakeup
            self._wakeup = None
            self.task = None
            self._idle_since = 0.0
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(False)

    async def finish(self) -> None:
        """Stops writing at the end of the connection; a flushing close may finish first."""
        tasks: list[asyncio.Task[None]] = []
        task = self.task
        if task is not None:
            # A close that flushes first (abuse, auth failure) lets the writer finish its queue;
            # otherwise the socket is gone or going and what is queued cannot be delivered.
            closing = self.closing
            if closing is None or not closing[2] or self._ws.state is State.CLOSED:
                task.cancel()
            tasks.append(task)
        if self._close_task is not None:
            tasks.append(self._close_task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            self._idle_since = 0.0
            if not wakeup.done():
                wakeup.set_result(True)
        elif self.task is None:
            self.task = self._loop.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Writes queued frames in order, until closing or retired by sweep() when idle."""
        ws = self._ws
        loop = self._loop
        try:
            while True:
                batch = self._out
                if batch:
                    self._out = []
                    self._batch = len(batch)
                    for data in batch:
                        self._send_started = loop.time()
                        await ws.send(data)
                        self._batch -= 1
                    self._send_started = 0.0
                    continue
                closing = self.closing
                if closing is not None:
                    if closing[2]:
                        await self._close(closing[0], closing[1])
                    return
                self._wakeup = wakeup = loop.create_future()
                self._idle_since = loop.time()
                if not await wakeup:
                    # Retired: sweep() has already forgotten this task, so an emit() from now
                    # on starts a new writer.
                    return
        except ConnectionClosed:
            pass

    async def _close(self, code: int, reason: str) -> None:
        """The closing handshake, bounded: a client that reads nothing would hold it forever."""
        try:
            async with asyncio.timeout(self._config.close_timeout_s):
                await self._ws.close(code, reason)
        except TimeoutError:
            self._ws.transport.abort()
