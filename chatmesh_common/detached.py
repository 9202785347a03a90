"""Blocking clean-up calls (a driver's shutdown, say) that must not hold up a stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


async def run_detached(fn: Callable[[], object], *, timeout_s: float, what: str) -> bool:
    """Runs `fn` in a daemon thread of its own and waits at most `timeout_s` for it; True if it
    finished in time (its exception, if any, is logged, never raised).

    Not the loop's default executor: a call that never returns there would also hang the
    loop's own shutdown, which joins every executor thread."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def signal_done() -> None:
        # The loop may be gone by the time a slow call returns.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(finished.set)

    def target() -> None:
        try:
            fn()
        except Exception:
            log.warning("%s failed", what, exc_info=True)
        finally:
            signal_done()

    threading.Thread(target=target, name=what, daemon=True).start()
    try:
        async with asyncio.timeout(timeout_s):
            await finished.wait()
    except TimeoutError:
        log.warning("%s still running after %.0fs; not waiting for it", what, timeout_s)
        return False
    return True
