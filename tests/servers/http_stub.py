"""A local HTTP server (hypercorn, in the test's event loop) for standing in for a third-party
HTTP API: subclasses answer whole requests; this module does the serving.

With `tls=True` it serves HTTPS with HTTP/2 and HTTP/1.1 (ALPN) under a fresh self-signed
certificate for 127.0.0.1; `client_ssl_context()` is what a client must trust. Close clients
before `stop()`: a TLS connection left open holds the shutdown for asyncio's SSL shutdown
timeout (30 s).

`hold()` lets a handler hang the way an overloaded service does; `stop()` releases held
requests first, so shutdown never waits on them.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import Framework

from tests.servers.ports import free_port


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    # "1.1" or "2".
    http_version: str
    # Lower-cased names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class HttpStub:
    """Serve `handle` on 127.0.0.1 at a free port: `async with Subclass(...) as server:`."""

    def __init__(self, *, tls: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.tls = tls
        self._cert_pem = b""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._shutdown = asyncio.Event()
        self._released = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def certificate_pem(self) -> str:
        assert self._cert_pem, "the server is not started with tls=True"
        return self._cert_pem.decode("ascii")

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts this server's certificate only."""
        return ssl.create_default_context(cadata=self.certificate_pem)

    def _write_certificate(self, directory: Path) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        # A name of its own per server: a client trusting two of them finds each by its name.
        common_name = f"{type(self).__name__} {self.host}:{self.port}"
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.host))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        certfile, keyfile = directory / "cert.pem", directory / "key.pem"
        certfile.write_bytes(self._cert_pem)
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(certfile), str(keyfile)

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    async def hold(self) -> None:
        """Wait until the server stops: a request that never gets an answer in time."""
        await self._released.wait()

    async def start(self) -> None:
        self.port = free_port(self.host)
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.graceful_timeout = 1.0
        config.accesslog = None
        config.errorlog = None
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="http-stub-")
            config.certfile, config.keyfile = self._write_certificate(Path(self._tmp.name))
        self._task = asyncio.create_task(
            serve(cast(Framework, self._asgi), config, shutdown_trigger=self._shutdown.wait)
        )
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"{type(self).__name__}: the server exited on start")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        self._released.set()
        self._shutdown.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunks.append(event.get("body", b""))
            if not event.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(
            scope["method"], scope["path"], scope["http_version"], headers, b"".join(chunks)
        )
        response = await self.handle(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
