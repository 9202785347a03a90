"""Serving a local HTTP API from inside a test's event loop: hypercorn on a free port, over
TLS (with a self-signed certificate made at test time) or plain HTTP/1.1.

The stand-ins for third-party services (tests/servers/apns.py, tests/servers/fcm.py) are written
as one async handler from `Request` to `Response`; `serve()` turns that into an ASGI app.

    async with serve(handler, tls=make_tls(tmp_path)) as url:
        ...  # https://127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from tests.servers.ports import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    # Lower-cased names; `header_list` keeps repeats, which some APIs refuse.
    headers: Mapping[str, str]
    header_list: tuple[tuple[str, str], ...]
    body: bytes
    http_version: str
    # (host, port) of the client's end of the connection: one value per connection.
    client: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Tls:
    certfile: Path
    keyfile: Path

    @property
    def ca_file(self) -> str:
        """What a client trusts: the self-signed certificate itself."""
        return str(self.certfile)


def make_tls(directory: Path, hostname: str = "localhost") -> Tls:
    """A self-signed P-256 certificate for `hostname` and 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
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
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address(HOST))]
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
    directory.mkdir(parents=True, exist_ok=True)
    certfile = directory / "server.crt"
    keyfile = directory / "server.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Tls(certfile, keyfile)


def asgi_app(
    handler: Handler,
) -> Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
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
        body = b""
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            if event["type"] == "http.request":
                body += event.get("body", b"")
                if not event.get("more_body", False):
                    break
        header_list = tuple(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        )
        client = scope["client"] or ("", 0)
        request = Request(
            method=scope["method"],
            path=scope["path"],
            headers=dict(header_list),
            header_list=header_list,
            body=body,
            http_version=scope["http_version"],
            client=(client[0], client[1]),
        )
        response = await handler(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    return app


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, *, tls: Tls | None = None, h2_only: bool = False
) -> AsyncIterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in the running loop; yields the base URL.

    `h2_only`: offer only "h2" in TLS ALPN, like a server that speaks nothing else.
    """
    for attempt in range(3):
        port = free_port(HOST)
        config = Config()
        config.bind = [f"{HOST}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.servers.asgi")
        # Handlers told to hang are cut off quickly at the end of a test.
        config.graceful_timeout = 0.5
        if tls is not None:
            config.certfile = str(tls.certfile)
            config.keyfile = str(tls.keyfile)
            if h2_only:
                config.alpn_protocols = ["h2"]
        stop = asyncio.Event()
        task = asyncio.create_task(
            hypercorn_serve(asgi_app(handler), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        try:
            await _wait_listening(port, task)
        except OSError:  # the port was taken between free_port() and the bind
            if attempt == 2:
                raise
            continue
        scheme = "https" if tls is not None else "http"
        try:
            yield f"{scheme}://{HOST}:{port}"
        finally:
            stop.set()
            await task
        return


async def _wait_listening(port: int, task: asyncio.Task[None], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if task.done():
                task.result()  # raises the bind error
                raise OSError(f"server on port {port} stopped during startup")
            try:
                _, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            return
