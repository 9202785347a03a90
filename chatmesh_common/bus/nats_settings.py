"""Settings of a NATS connection and of the JetStream event stream, free of the nats package.

Kept apart from `chatmesh_common.bus.nats` so that configuration can be read (and refused)
without nats-py installed; only a process that uses the NATS bus imports the client.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from chatmesh_common.settings import ConfigError, env_float, env_int, env_list


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
    # Durable pull consumers created at start-up if missing (e.g. "notify", "search"), so they
    # hold every event before their service first runs; the service sets their filters.
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


def bus_from_env(env: Mapping[str, str]) -> str:
    """CHATMESH_BUS: `inprocess` (one process) or `nats` (every replica on one NATS cluster)."""
    bus = env.get("CHATMESH_BUS", "") or "inprocess"
    if bus not in ("inprocess", "nats"):
        raise ConfigError(f"CHATMESH_BUS must be 'inprocess' or 'nats', got {bus!r}")
    return bus


def nats_settings_from_env(env: Mapping[str, str]) -> NatsSettings:
    """The CHATMESH_NATS_* settings; CHATMESH_NATS_URLS is required."""
    urls = env_list(env, "CHATMESH_NATS_URLS")
    if not urls:
        raise ConfigError(
            "CHATMESH_NATS_URLS is required with CHATMESH_BUS=nats"
            " (comma-separated, e.g. nats://n1:4222,nats://n2:4222)"
        )
    d = NatsSettings()
    settings = NatsSettings(
        urls=urls,
        creds_file=env.get("CHATMESH_NATS_CREDS", ""),
        token=env.get("CHATMESH_NATS_TOKEN", ""),
        user=env.get("CHATMESH_NATS_USER", ""),
        password=env.get("CHATMESH_NATS_PASSWORD", ""),
        tls_ca=env.get("CHATMESH_NATS_TLS_CA", ""),
        tls_cert=env.get("CHATMESH_NATS_TLS_CERT", ""),
        tls_key=env.get("CHATMESH_NATS_TLS_KEY", ""),
        stream=env.get("CHATMESH_NATS_STREAM", "") or d.stream,
        stream_replicas=env_int(env, "CHATMESH_NATS_STREAM_REPLICAS", d.stream_replicas),
        stream_max_age_s=env_float(env, "CHATMESH_NATS_STREAM_MAX_AGE_S", d.stream_max_age_s),
        stream_max_bytes=env_int(env, "CHATMESH_NATS_STREAM_MAX_BYTES", d.stream_max_bytes),
        stream_max_msgs=env_int(env, "CHATMESH_NATS_STREAM_MAX_MSGS", d.stream_max_msgs),
        duplicate_window_s=env_float(env, "CHATMESH_NATS_DUPLICATE_WINDOW_S", d.duplicate_window_s),
        consumers=env_list(env, "CHATMESH_NATS_CONSUMERS"),
        publish_timeout_s=env_float(env, "CHATMESH_NATS_PUBLISH_TIMEOUT_S", d.publish_timeout_s),
        connect_wait_s=env_float(env, "CHATMESH_NATS_CONNECT_WAIT_S", d.connect_wait_s),
    )
    if settings.user and not settings.password:
        raise ConfigError("CHATMESH_NATS_USER needs CHATMESH_NATS_PASSWORD")
    if settings.tls_key and not settings.tls_cert:
        raise ConfigError("CHATMESH_NATS_TLS_KEY needs CHATMESH_NATS_TLS_CERT")
    if not 1 <= settings.stream_replicas <= 5:
        raise ConfigError("CHATMESH_NATS_STREAM_REPLICAS must be 1 to 5")
    if settings.duplicate_window_s <= 0:
        raise ConfigError("CHATMESH_NATS_DUPLICATE_WINDOW_S must be positive")
    return settings
