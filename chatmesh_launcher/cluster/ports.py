"""Free TCP ports on the loopback interface.

Ports come from below the kernel's ephemeral range. A port the kernel hands out for `bind(0)`
is also one it hands out for every outgoing connection, so a server told to listen on it could
find a client's socket already there (CI saw exactly that: "Address already in use" on a port
picked a moment before). Below the ephemeral range only explicit binds take ports, and this
process walks the range forward so it never hands the same port out twice in a run.

Several processes on one machine (a test run and the benchmarks it starts, two checkouts'
runs) claim each port with a marker file created exclusively in a shared directory, so none
hands out a port another picked but has not bound yet. A claim older than `_CLAIM_S` is stale
(its server has bound by then or is gone) and may be taken again.
"""

import itertools
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_FLOOR = 10_000
_LOCK = threading.Lock()
_CLAIMS = Path(tempfile.gettempdir()) / "chatmesh-port-claims"
_CLAIM_S = 600.0


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _walk() -> Iterator[int]:
    low = _ephemeral_low()
    if low - _FLOOR < 1_000:
        return iter(())
    # A random start keeps two test runs on one machine apart.
    start = random.Random(os.getpid()).randrange(_FLOOR, low)
    return itertools.chain(range(start, low), itertools.cycle(range(_FLOOR, low)))


_PORTS = _walk()


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _claim(port: int) -> bool:
    """True when this process now holds the port's claim (no fresh claim by another)."""
    marker = _CLAIMS / str(port)
    for _ in range(2):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - marker.stat().st_mtime < _CLAIM_S:
                    return False
                marker.unlink()
            except FileNotFoundError:
                pass
        except OSError:
            return True  # no shared directory: the bind check alone
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago and that no outgoing connection will take.

    Another explicit bind could still take it in between; servers here exit on a failed bind
    and say so, and the starters retry on a fresh port.
    """
    with _LOCK:
        _CLAIMS.mkdir(mode=0o777, exist_ok=True)
        for _ in range(2_000):
            port = next(_PORTS, None)
            if port is None:
                break
            if _bindable(host, port) and _claim(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen
