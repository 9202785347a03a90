"""A real `redis-server` (Debian package), in-memory only: the cluster's presence store, and the
tests'."""

from __future__ import annotations

import socket

from .server_process import ServerProcess, read_line


class RedisServer(ServerProcess):
    """redis-server with persistence off (`--save "" --appendonly no`): `restart()` keeps the port
    and work dir but starts empty, like a real Redis that lost its memory."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip

    def probe(self, sock: socket.socket) -> bool:
        # -LOADING (or anything but +PONG) means not ready yet.
        sock.sendall(b"PING\r\n")
        return read_line(sock) == b"+PONG"
