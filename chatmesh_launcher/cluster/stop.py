"""Stopping what `chatmesh cluster up` started: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

from .liveness import own_process_group, pid_alive
from .state import Component


def _signal(component: Component, signum: int) -> None:
    """Signals the component's whole process group when it leads one (its children too)."""
    try:
        if own_process_group(component.pid):
            os.killpg(component.pid, signum)
        else:
            os.kill(component.pid, signum)
    except ProcessLookupError:
        pass


def stop_components(
    components: Sequence[Component],
    report: Callable[[Component, str], None] = lambda component, how: None,
) -> list[Component]:
    """Stops the components still alive and waits for them to exit: SIGTERM to all at once,
    SIGKILL to each one still running after its own grace period.

    Only a pid that is still the recorded process is signalled (see liveness.pid_alive).
    Returns the components that were still alive after SIGKILL (none, normally).
    """
    alive = [c for c in reversed(components) if pid_alive(c)]
    for component in alive:
        _signal(component, signal.SIGTERM)
    began = time.monotonic()
    pending = list(alive)
    killed: list[Component] = []
    while pending and time.monotonic() - began < 60.0:
        time.sleep(0.1)
        for component in list(pending):
            if not pid_alive(component):
                pending.remove(component)
                report(component, "killed" if component in killed else "stopped")
            elif component not in killed and time.monotonic() - began > component.grace_s:
                _signal(component, signal.SIGKILL)
                killed.append(component)
    return pending
