"""Running a terminal command until it ends, Ctrl-C or SIGTERM, with one-line errors.

`chatmesh tail` and `chatmesh chat` are clients, not services: no JSON logs, no metrics. Ctrl-C
or SIGTERM cancels the command's task and exits 0; a `CommandError` or ConfigError is one line
on stderr (`chatmesh: <command>: <message>`) and a non-zero exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from chatmesh_common.runner import CONFIG_ERROR_EXIT
from chatmesh_common.settings import ConfigError

# A server that cannot be reached, or refused the command: not a configuration error.
FAILURE_EXIT = 1


class CommandError(Exception):
    """Ends the command with its message on stderr and FAILURE_EXIT."""


def unreachable(what: str, target: str, detail: str, flag: str) -> CommandError:
    """The one line for a server that does not answer, with what to check."""
    detail = detail.splitlines()[0] if detail else "no answer"
    return CommandError(
        f"cannot reach {what} at {target} ({detail}); is `chatmesh dev` running? {flag}"
    )


def run_command(name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Runs `main` until it returns or a signal stops it; the exit status."""
    # Until the event loop takes over, SIGTERM stops the command as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(_until_signal(main))
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:
        print(f"chatmesh: {name}: {exc}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    except CommandError as exc:
        print(f"chatmesh: {name}: {exc}", file=sys.stderr, flush=True)
        return FAILURE_EXIT
    except BrokenPipeError:
        # `chatmesh tail alice | head`: the reader left; nothing more to say.
        # Point stdout at /dev/null so the flush at exit does not fail again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


async def _until_signal(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    try:
        await main()
    except asyncio.CancelledError:
        if not stopped:
            raise
    return 0
