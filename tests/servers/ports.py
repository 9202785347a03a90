"""Free TCP ports on the loopback interface."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago: bind to port 0 and let the kernel choose.

    The socket is closed before the caller binds, so another process could take the port in
    between; servers here notice that (they exit on a failed bind) and say so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
