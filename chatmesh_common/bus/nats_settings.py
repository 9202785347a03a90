"""Settings of a NATS connection and of the JetStream event stream, free of the nats package.

Kept apart from `chatmesh_common.bus.nats` so that configuration can be read (and refused)
without nats-py installed; only a process that uses the NATS bus imports the client.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from chatmesh_common.settings import ConfigError, read_env, setting, validate


@dataclass(frozen=True)
class NatsSettings:
    """How to reach a NATS cluster and how to shape the event stream. Durations in seconds."""

    urls: tuple[str, ...] = setting(
        "CHATMESH_NATS_URLS",
        ("nats://127.0.0.1:4222",),
        "the NATS servers, comma-separated (required with CHATMESH_BUS=nats)",
    )
    # Authentication: a creds file (JWT + nkey), a token, or a user and password.
    creds_file: str = setting("CHATMESH_NATS_CREDS", "", "a creds file (JWT and nkey)")
    token: str = setting("CHATMESH_NATS_TOKEN", "", "a NATS token", secret=True)
    user: str = setting("CHATMESH_NATS_USER", "", "a NATS user (with CHATMESH_NATS_PASSWORD)")
    password: str = setting("CHATMESH_NATS_PASSWORD", "", "the NATS user's password", secret=True)
    # TLS: a CA bundle to verify the servers, and a client certificate and key for mutual TLS.
    tls_ca: str = setting("CHATMESH_NATS_TLS_CA", "", "CA bundle that verifies the servers")
    tls_cert: str = setting("CHATMESH_NATS_TLS_CERT", "", "client certificate for mutual TLS")
    tls_key: str = setting("CHATMESH_NATS_TLS_KEY", "", "key of the client certificate")
    client_name: str = "chatmesh"
    stream: str = setting("CHATMESH_NATS_STREAM", "CHATMESH_EVENTS", "the durable event stream")
    stream_replicas: int = setting(
        "CHATMESH_NATS_STREAM_REPLICAS", 1, "replicas of the event stream", minimum=1, maximum=5
    )
    stream_max_age_s: float = setting(
        "CHATMESH_NATS_STREAM_MAX_AGE_S",
        7 * 24 * 3600.0,
        "oldest event the stream keeps",
        positive=True,
    )
    stream_max_bytes: int = setting(
        "CHATMESH_NATS_STREAM_MAX_BYTES", -1, "bytes the stream keeps (-1: no limit)", minimum=-1
    )
    stream_max_msgs: int = setting(
        "CHATMESH_NATS_STREAM_MAX_MSGS", -1, "events the stream keeps (-1: no limit)", minimum=-1
    )
    duplicate_window_s: float = setting(
        "CHATMESH_NATS_DUPLICATE_WINDOW_S",
        120.0,
        "repeats of one Nats-Msg-Id within this window are dropped",
        positive=True,
    )
    consumers: tuple[str, ...] = setting(
        "CHATMESH_NATS_CONSUMERS",
        (),
        "durable pull consumers made at start-up if missing (e.g. notify)",
    )
    consumer_ack_wait_s: float = 30.0
    consumer_max_ack_pending: int = 10_000
    publish_timeout_s: float = setting(
        "CHATMESH_NATS_PUBLISH_TIMEOUT_S",
        2.0,
        "time to wait for a JetStream ack before a durable publish counts as failed",
        positive=True,
    )
    connect_wait_s: float = setting(
        "CHATMESH_NATS_CONNECT_WAIT_S",
        30.0,
        "start-up keeps trying the servers this long",
        minimum=0,
    )
    reconnect_wait_s: float = 0.5
    # Bytes of core publishes buffered while reconnecting (beyond that, publishes fail).
    reconnect_buffer_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        validate(self)
        if self.user and not self.password:
            raise ConfigError("CHATMESH_NATS_USER needs CHATMESH_NATS_PASSWORD")
        if self.tls_key and not self.tls_cert:
            raise ConfigError("CHATMESH_NATS_TLS_KEY needs CHATMESH_NATS_TLS_CERT")

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca or None)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        return context


def nats_settings_from_env(env: Mapping[str, str]) -> NatsSettings:
    """The CHATMESH_NATS_* settings; CHATMESH_NATS_URLS is required."""
    if not env.get("CHATMESH_NATS_URLS", "").strip():
        raise ConfigError(
            "CHATMESH_NATS_URLS is required with CHATMESH_BUS=nats"
            " (comma-separated, e.g. nats://n1:4222,nats://n2:4222)"
        )
    return read_env(NatsSettings, env)
