"""Free TCP ports on the loopback interface.

Ports come from below the kernel's ephemeral range. A port the kernel hands out for `bind(0)`
is also one it hands out for every outgoing connection, so a server told to listen on it could
find a client's socket already there (CI saw exactly that: "Address already in use" on a port
picked a moment before). Below the ephemeral range only explicit binds take ports, and this
process walks the range forward so it never hands the same port out twice in a run.
"""

import itertools
import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

_FLOOR = 10_000
_LOCK = threading.Lock()


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago and that no outgoing connection will take.

    Another explicit bind could still take it in between; servers here exit on a failed bind
    and say so, and the starters retry on a fresh port.
    """
    with _LOCK:
        for _ in range(2_000):
            port = next(_PORTS, None)
            if port is None:
                break
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen
