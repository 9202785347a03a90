"""Settings of a NATS connection and of the JetStream event stream, free of the nats package.

Kept apart from `nats_bus` so that configuration can be read (and refused) without nats-py
installed; only a process that uses the NATS bus imports the client.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

EVENTS_SUBJECTS = "chatmesh.events.>"


@dataclass(frozen=True)
class NatsSettings:
    """How to reach a NATS cluster and how to shape the event stream. Durations in seconds."""

    urls: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    # Authentication: a creds file (JWT + nkey), a token, or a user and password.
    creds_file: str = ""
    token: str = ""
    user: str = ""
    password: str = ""
    # TLS: a CA bundle to verify the servers, and a client certificate and key for mutual TLS.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    client_name: str = "chatmesh"
    # The durable event stream.
    stream: str = "CHATMESH_EVENTS"
    stream_replicas: int = 1
    stream_max_age_s: float = 7 * 24 * 3600
    stream_max_bytes: int = -1
    stream_max_msgs: int = -1
    # Repeats of one Nats-Msg-Id within this window are dropped by the stream.
    duplicate_window_s: float = 120.0
    # Durable pull consumers created at start-up (e.g. "notify", "search").
    consumers: tuple[str, ...] = ()
    consumer_ack_wait_s: float = 30.0
    consumer_max_ack_pending: int = 10_000
    # Time to wait for a JetStream ack before a durable publish counts as failed.
    publish_timeout_s: float = 2.0
    # Start-up: keep trying the servers this long before giving up.
    connect_wait_s: float = 30.0
    reconnect_wait_s: float = 0.5
    # Bytes of core publishes buffered while reconnecting (beyond that, publishes fail).
    reconnect_buffer_bytes: int = 8 * 1024 * 1024

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca or None)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        return context
