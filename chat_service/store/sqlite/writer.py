"""The group-commit writer of the embedded store: the one thread that writes the SQLite file.

Every write is a job for this thread. It takes all jobs waiting, runs them in one transaction
(each inside its own savepoint, so one failing job does not sink the others), commits with
`synchronous=FULL` (the WAL is fsynced before COMMIT returns), and only then resolves the
callers' futures. Many concurrent sends thus share one fsync, and an acknowledged write has always
reached the disk. Because a single thread writes, seq assignment is serial and gapless.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..metrics import STORE_BATCH_SIZE, STORE_TXN_SECONDS
from .schema import connect

log = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[str, Callable[[sqlite3.Connection], Any], Future[Any]]


class GroupCommitWriter:
    """The one thread that writes: batches queued jobs into one transaction and one fsync."""

    def __init__(self, path: str, max_batch: int = 512) -> None:
        self._path = path
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    async def submit(self, name: str, job: Callable[[sqlite3.Connection], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((name, job, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        try:
            self._conn = connect(self._path)
        except BaseException as exc:  # surfaced to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        conn = self._conn
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            # A caller that was cancelled while its job waited gets nothing run; once running,
            # a job can no longer be cancelled, so setting its result below cannot fail.
            batch = [job for job in batch if job[2].set_running_or_notify_cancel()]
            if batch:
                self._commit(conn, batch)
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for name, job, future in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((future, None, exc))
                    log.debug("store job %s refused: %s", name, exc)
                else:
                    outcomes.append((future, result, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction as a whole failed (disk full, I/O error): nothing of it is durable.
            log.exception("group commit of %d jobs failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _name, _job, future in batch:
                future.set_exception(exc)
            return
        STORE_TXN_SECONDS.labels(batch[0][0] if len(batch) == 1 else "group_commit").observe(
            time.perf_counter() - started
        )
        STORE_BATCH_SIZE.observe(len(batch))
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
