"""A local HTTP server (hypercorn, in the test's event loop) for standing in for a third-party
HTTP API: subclasses answer whole requests in `handle`; this module does the serving.

    class LocalApi(HttpStub):
        async def handle(self, request: Request) -> Response: ...

    async with LocalApi(tls=True) as server:
        ...  # server.origin is https://127.0.0.1:<port>

With `tls=True` it serves HTTPS with HTTP/2 and HTTP/1.1 (ALPN; `h2_only=True` offers only
h2, like a server that speaks nothing else) under a fresh self-signed certificate for
127.0.0.1 and localhost. A client trusts it through `client_ssl_context()`, or through the
certificate file `ca_file` (a CA bundle path) while the server runs. Close clients before
`stop()`: a TLS connection left open holds the shutdown for asyncio's SSL shutdown timeout.

`hold()` lets a handler hang the way an overloaded service does, until the server stops or
for a given time; `stop()` releases held requests first, so shutdown never waits on them.
`play()` runs a per-request script of replies and `Hang` steps on top of it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import Framework

from tests.servers.ports import free_port

HOST = "127.0.0.1"
_BIND_ATTEMPTS = 3
_Reply = TypeVar("_Reply")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    # "1.1" or "2".
    http_version: str
    # Lower-cased names; a repeated header keeps its last value here, and every value in
    # `header_list` (some APIs refuse repeats).
    headers: Mapping[str, str]
    body: bytes = b""
    header_list: tuple[tuple[str, str], ...] = ()
    # (host, port) of the client's end of the connection: one value per connection.
    client: tuple[str, int] = ("", 0)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Hang:
    """A scripted step: hold the request this long (or until the server stops), then go on
    with the next step, or with the normal answer."""

    seconds: float


def self_signed_certificate(common_name: str, host: str = HOST) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): a P-256 CA certificate for `host` and localhost,
    valid from five minutes ago for a day. A distinct `common_name` per server lets a client
    that trusts several of them find each one's certificate by its name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class HttpStub:
    """Serve `handle` on 127.0.0.1 at a free port: `async with Subclass(...) as server:`."""

    def __init__(self, *, tls: bool = False, h2_only: bool = False) -> None:
        self.host = HOST
        self.port = 0
        self.tls = tls
        self.h2_only = h2_only
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
        assert self._cert_pem, "the server is not running with tls=True"
        return self._cert_pem.decode("ascii")

    @property
    def ca_file(self) -> str:
        """The certificate as a CA bundle file, for clients that take a path; gone on stop()."""
        assert self._tmp is not None, "the server is not running with tls=True"
        return str(Path(self._tmp.name) / "cert.pem")

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts this server's certificate only."""
        return ssl.create_default_context(cadata=self.certificate_pem)

    async def handle(self, request: Request) -> Response:
        raise NotImplementedError

    async def hold(self, seconds: float | None = None) -> bool:
        """Wait until the server stops, or `seconds` at most: a request that gets no answer in
        time. True when it was released by stop() (the handler should answer and be done)."""
        try:
            async with asyncio.timeout(seconds):
                await self._released.wait()
        except TimeoutError:
            return False
        return True

    async def play(
        self,
        script: deque[_Reply | Hang] | None,
        answer: Callable[[_Reply], Response],
    ) -> Response | None:
        """Take the next steps of a per-request script: hold for each Hang, then `answer` the
        first reply step. None when the script has no reply left (answer normally); 503 when
        stop() released a Hang."""
        while script:
            step = script.popleft()
            if isinstance(step, Hang):
                if await self.hold(step.seconds):
                    return Response(503)
                continue
            return answer(step)
        return None

    async def start(self) -> None:
        self._shutdown.clear()
        self._released.clear()
        for attempt in range(_BIND_ATTEMPTS):
            self.port = free_port(self.host)
            self._task = asyncio.create_task(
                serve(
                    cast(Framework, self._asgi),
                    self._config(),
                    shutdown_trigger=self._shutdown.wait,
                )
            )
            try:
                await self._wait_listening(self._task)
            except OSError:
                # A bind error (the port was taken between free_port() and the bind) ends the
                # task: try another port. Anything else, or the last attempt, is the caller's.
                if not self._task.done() or attempt == _BIND_ATTEMPTS - 1:
                    await self.stop()
                    raise
                self._task = None
                continue
            return

    def _config(self) -> Config:
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        # Held requests are released on stop(); anything else still running is cut off soon.
        config.graceful_timeout = 0.5
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.servers.http_stub")
        if self.tls:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="http-stub-")
            self._cert_pem, key_pem = self_signed_certificate(
                f"{type(self).__name__} {self.host}:{self.port}", self.host
            )
            directory = Path(self._tmp.name)
            (directory / "cert.pem").write_bytes(self._cert_pem)
            (directory / "key.pem").write_bytes(key_pem)
            config.certfile = str(directory / "cert.pem")
            config.keyfile = str(directory / "key.pem")
            if self.h2_only:
                config.alpn_protocols = ["h2"]
        return config

    async def _wait_listening(self, task: asyncio.Task[None], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while True:
                if task.done():
                    task.result()  # raises the bind error
                    raise OSError(f"{type(self).__name__}: the server exited on start")
                try:
                    _, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
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
        header_list = tuple(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        )
        client = scope.get("client") or ("", 0)
        request = Request(
            method=scope["method"],
            path=scope["path"],
            http_version=scope["http_version"],
            headers=dict(header_list),
            body=b"".join(chunks),
            header_list=header_list,
            client=(client[0], client[1]),
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
