"""TLS of every chatmesh listener and internal gRPC channel, from configured PEM files.

One settings group (CHATMESH_TLS_*) read by every service:

* a certificate and key: gRPC servers listen with TLS (`server_credentials`) and the gateway's
  WebSocket listener serves wss (`server_ssl_context`);
* a CA bundle: every internal gRPC channel (`open_channel`) uses TLS and trusts it;
* client auth on: mutual TLS between services. gRPC servers require a client certificate that
  chains to the CA, and channels present the process's own certificate and key. The WebSocket
  listener never asks for one (browsers and apps have none).

Nothing set: plaintext, as before. The files are read once, when the settings are built, so a
missing, unreadable or mismatched file stops the process at start with one line naming the
setting (a ConfigError).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from chatmesh_common.settings import ConfigError, read_env, setting, validate

CERT_ENV = "CHATMESH_TLS_CERT_FILE"
KEY_ENV = "CHATMESH_TLS_KEY_FILE"
CA_ENV = "CHATMESH_TLS_CA_FILE"
CLIENT_AUTH_ENV = "CHATMESH_TLS_CLIENT_AUTH"


def _read(path: str, env: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{env}: cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{env}: {path} is not a PEM file")
    return data


@dataclass(frozen=True)
class TlsSettings:
    """The CHATMESH_TLS_* settings and the credentials made from their files."""

    cert_file: str = setting(
        CERT_ENV,
        "",
        "PEM certificate (chain) gRPC and WebSocket listeners serve, and with client auth the"
        " one calls present (with CHATMESH_TLS_KEY_FILE); empty: plaintext listeners",
    )
    key_file: str = setting(KEY_ENV, "", "PEM private key of CHATMESH_TLS_CERT_FILE")
    ca_file: str = setting(
        CA_ENV,
        "",
        "PEM CA bundle internal gRPC calls trust (empty: plaintext calls); with client auth also"
        " the CA client certificates must chain to",
    )
    client_auth: bool = setting(
        CLIENT_AUTH_ENV,
        False,
        "mutual TLS between services: gRPC servers require a client certificate from"
        " CHATMESH_TLS_CA_FILE, and calls present CHATMESH_TLS_CERT_FILE",
    )
    # Made from the files in __post_init__.
    _pem: tuple[bytes, bytes, bytes] = field(
        init=False, repr=False, compare=False, default=(b"", b"", b"")
    )
    _ssl: ssl.SSLContext | None = field(init=False, repr=False, compare=False, default=None)
    _channel: grpc.ChannelCredentials | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        validate(self)
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(f"set both {CERT_ENV} and {KEY_ENV}, or neither")
        if self.client_auth and not (self.cert_file and self.ca_file):
            raise ConfigError(
                f"{CLIENT_AUTH_ENV} needs {CERT_ENV}, {KEY_ENV} and {CA_ENV} (mutual TLS)"
            )
        # Read here, once: a bad file is a configuration error before anything starts.
        cert = _read(self.cert_file, CERT_ENV) if self.cert_file else b""
        key = _read(self.key_file, KEY_ENV) if self.key_file else b""
        ca = _read(self.ca_file, CA_ENV) if self.ca_file else b""
        object.__setattr__(self, "_pem", (cert, key, ca))
        object.__setattr__(self, "_ssl", self._ssl_context() if cert else None)
        object.__setattr__(self, "_channel", self._make_channel_credentials())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TlsSettings:
        return read_env(cls, env)

    @property
    def serving(self) -> bool:
        """Listeners use TLS."""
        return bool(self.cert_file)

    def _ssl_context(self) -> ssl.SSLContext:
        # Also proves the key belongs to the certificate, which gRPC would only log.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{KEY_ENV}: {self.key_file} is not the key of {self.cert_file} ({CERT_ENV}): {exc}"
            ) from exc
        return context

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """A gRPC server's credentials; None: plaintext."""
        cert, key, ca = self._pem
        if not cert:
            return None
        if self.client_auth:
            return grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=True
            )
        return grpc.ssl_server_credentials([(key, cert)])

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The WebSocket listener's TLS (no client certificate asked); None: plaintext."""
        return self._ssl

    def _make_channel_credentials(self) -> grpc.ChannelCredentials | None:
        cert, key, ca = self._pem
        if not ca:
            return None
        if self.client_auth:
            return grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
        return grpc.ssl_channel_credentials(root_certificates=ca)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """An internal channel's credentials; None: plaintext."""
        return self._channel


def open_channel(
    target: str, tls: TlsSettings, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """The one way a chatmesh process opens a gRPC channel to another: TLS when a CA is set."""
    credentials = tls.channel_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, credentials, options=list(options))
