"""Fixtures of the fault tests: the load profile, the figures reporter and the clusters.

The NATS cluster is the one of tests/bus_nats (chat replicas on one SQLite file and one
nats-server, gateways in front), with a FaultProxy between gateway g1 and replica a. The CQL
cluster is the same on a fresh keyspace of the session's Cassandra (tests/cql/support.py); the
presence cluster adds presence_service on the session's Redis; the notify cluster adds
notify_service to that, pushing webhooks to a local receiver; the media cluster adds
media_service on the session's SeaweedFS; the short-deadline cluster gives g1 a 1 s deadline
per call.
Each run's figures are printed in a "fault figures" section at the end of the pytest output.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
from nats.js.errors import NotFoundError

from chat_service.store.sqlite.schema import migrate
from chatmesh_common.bus.nats_settings import NatsSettings
from tests.bus_nats.cluster import SECRET, ChatProcess, GatewayProcess
from tests.cql.support import fresh_keyspace, run_migrate, scylla_env
from tests.servers.cassandra import CassandraServer
from tests.servers.nats import NatsServer
from tests.servers.redis import RedisServer
from tests.servers.services import (
    MediaServiceProcess,
    NotifyServiceProcess,
    PresenceServiceProcess,
)
from tests.servers.webhook import LocalWebhookReceiver

if TYPE_CHECKING:
    # Only named: it loads boto3, which the other fault tests do not need.
    from tests.servers.seaweedfs import SeaweedServer

from .check import Figures
from .profile import Profile, current_profile
from .proxy import FaultProxy
from .scenario import SHORT_DEADLINE_S, Cluster

# Signs presence_service's AccessService calls to chat_service; differs from SECRET.
SERVICE_SECRET = "faults-tests-service-secret-of-32-bytes-or-more"
# Signs notify_service's webhooks; the receiver checks every signature.
WEBHOOK_SECRET = "faults-tests-webhook-secret"
_FIGURES = pytest.StashKey[list[str]]()
# No send limit: the load is the test's own, and a 429 would only add retries.
_GATEWAY_ENV = {
    "CHATMESH_WS_SEND_BURST": "100000",
    "CHATMESH_WS_SEND_RATE_PER_S": "100000",
    # Every test socket comes from 127.0.0.1: no per-address cap (default 1,000).
    "CHATMESH_WS_MAX_SOCKETS_PER_IP": "0",
}


@pytest.fixture
def profile() -> Profile:
    return current_profile()


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Callable[[Figures], None]:
    """Keeps a run's figures line for the summary section."""
    lines = request.config.stash.setdefault(_FIGURES, [])

    def record(figures: Figures) -> None:
        lines.append(f"{figures.line()} profile={current_profile().name}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.write_sep("-", "fault figures")
        for line in lines:
            terminalreporter.write_line(line)


async def _start_cluster(
    nats_url: str,
    tmp_path: Path,
    chat_env: Mapping[str, str],
    presence: PresenceServiceProcess | None = None,
    g1_env: Mapping[str, str] | None = None,
    notify: NotifyServiceProcess | None = None,
    media: MediaServiceProcess | None = None,
) -> AsyncIterator[Cluster]:
    data_dir = tmp_path / "chat-data"
    chats = [ChatProcess(n, data_dir, nats_url, tmp_path, **chat_env) for n in ("a", "b")]
    proxy = FaultProxy(chats[0].port)
    gateway_env = dict(_GATEWAY_ENV)
    if presence is not None:
        gateway_env["CHATMESH_PRESENCE_TARGET"] = presence.target
        presence.env["CHATMESH_CHAT_TARGET"] = chats[1].target  # its AccessService calls
    if notify is not None:
        assert presence is not None, "notify_service asks presence_service who is online"
        notify.env["CHATMESH_CHAT_TARGET"] = chats[1].target
        notify.env["CHATMESH_PRESENCE_TARGET"] = presence.target
    if media is not None:
        gateway_env["CHATMESH_MEDIA_TARGET"] = media.target
        media.env["CHATMESH_CHAT_TARGET"] = chats[1].target
    peers = [p for p in (presence, notify, media) if p is not None]
    gateways = [
        GatewayProcess("g1", proxy.target, tmp_path, **gateway_env, **(g1_env or {})),
        GatewayProcess("g2", chats[1].target, tmp_path, **gateway_env),
    ]
    try:
        await proxy.start()
        if "CHATMESH_STORE" not in chat_env:
            # The schema first, so the replicas can start at once (the CQL one is migrated).
            data_dir.mkdir(parents=True, exist_ok=True)
            migrate(str(data_dir / "chat.sqlite3"))
        # Gateways and presence_service start without their upstreams; they connect on demand.
        processes = [*chats, *peers, *gateways]
        await asyncio.gather(*(p.start() for p in processes))
        yield Cluster(chats, gateways, proxy, presence, notify, media)
    finally:
        for gateway in gateways:
            await gateway.kill()
        for peer in peers:
            await peer.kill()
        for grpc_peer in (notify, media):
            if grpc_peer is not None:
                await grpc_peer.channel.close(None)
        for chat in chats:
            await chat.kill()
            await chat.channel.close(None)
        await proxy.stop()


@pytest.fixture
async def nats_cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    async for cluster in _start_cluster(nats_server.url, tmp_path, {}):
        yield cluster


@pytest.fixture
async def short_deadline_cluster(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    """The NATS cluster with a 1 s deadline on g1's calls to a, so proxy latency can outlast it."""
    g1_env = {"CHATMESH_WS_RPC_TIMEOUT_S": str(SHORT_DEADLINE_S)}
    async for cluster in _start_cluster(nats_server.url, tmp_path, {}, g1_env=g1_env):
        yield cluster


@pytest.fixture
async def cql_cluster(
    nats_server: NatsServer, cassandra_server: CassandraServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """The same cluster on the Scylla store: a fresh, migrated keyspace of the session's CQL
    server, signed with the cluster's secret."""
    env = scylla_env(cassandra_server, fresh_keyspace("faults"), tmp_path / "chat-data")
    result = await run_migrate(env)
    assert result.returncode == 0, result.output
    chat_env = {k: v for k, v in env.items() if k.startswith(("CHATMESH_SCYLLA", "CHATMESH_STORE"))}
    chat_env["CHATMESH_JWT_SECRET"] = SECRET
    async for cluster in _start_cluster(nats_server.url, tmp_path, chat_env):
        yield cluster


def _presence(
    nats_server: NatsServer, redis_server: RedisServer, tmp_path: Path
) -> PresenceServiceProcess:
    """presence_service on the session's Redis (its own key prefix) with a short TTL, so a
    heartbeat comes every 2 s."""
    return PresenceServiceProcess(
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
            "CHATMESH_BUS": "nats",
            "CHATMESH_NATS_URLS": nats_server.url,
            "CHATMESH_REDIS_URL": redis_server.url,
            "CHATMESH_REDIS_PREFIX": f"faults:{uuid.uuid4().hex[:8]}:",
            "CHATMESH_PRESENCE_TTL_S": "6",
        },
        tmp_path / "presence.log",
    )


@pytest.fixture
async def presence_cluster(
    nats_server: NatsServer, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """The NATS cluster with presence_service; both gateways use it."""
    presence = _presence(nats_server, redis_server, tmp_path)
    chat_env = {"CHATMESH_SERVICE_SECRET": SERVICE_SECRET}
    async for cluster in _start_cluster(nats_server.url, tmp_path, chat_env, presence):
        yield cluster


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[LocalWebhookReceiver]:
    async with LocalWebhookReceiver(WEBHOOK_SECRET) as receiver:
        yield receiver


async def _purge_stream(nats_url: str) -> None:
    """The session's stream holds every earlier test's events, and notify's durable consumer
    starts at the beginning of the log: without a purge it would first work through them."""
    client = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):  # the session's first stream user: none yet
            await client.jetstream().purge_stream(NatsSettings().stream)
    finally:
        await client.close()


@pytest.fixture
async def notify_cluster(
    nats_server: NatsServer,
    redis_server: RedisServer,
    webhook_receiver: LocalWebhookReceiver,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """The presence cluster with notify_service as the local cluster runs it (cluster mode, the
    durable NATS consumer `notify`, the Redis store under its own prefix), pushing webhooks to
    `webhook_receiver`. Pushes are not coalesced (each message is one push), and a push a
    killed process had claimed is claimed again after 3 s instead of 120 s."""
    await _purge_stream(nats_server.url)
    notify = NotifyServiceProcess(
        {
            "CHATMESH_MODE": "cluster",
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
            "CHATMESH_BUS": "nats",
            "CHATMESH_NATS_URLS": nats_server.url,
            "CHATMESH_NOTIFY_STORE": "redis",
            "CHATMESH_REDIS_URL": redis_server.url,
            "CHATMESH_NOTIFY_REDIS_PREFIX": f"faults:{uuid.uuid4().hex[:8]}:notify:",
            "CHATMESH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "CHATMESH_NOTIFY_DEVICE_INTERVAL_S": "0",
            "CHATMESH_NOTIFY_LEASE_S": "3",
            "CHATMESH_PUSH_TIMEOUT_S": "2",
            "CHATMESH_NOTIFY_ACK_WAIT_S": "5",
            "CHATMESH_LOG_LEVEL": "WARNING",
        },
        tmp_path / "notify.log",
    )
    presence = _presence(nats_server, redis_server, tmp_path)
    chat_env = {"CHATMESH_SERVICE_SECRET": SERVICE_SECRET, "CHATMESH_NATS_CONSUMERS": "notify"}
    async for cluster in _start_cluster(
        nats_server.url, tmp_path, chat_env, presence, notify=notify
    ):
        yield cluster


@pytest.fixture
async def media_cluster(
    nats_server: NatsServer, s3_server: SeaweedServer, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """The NATS cluster with media_service (SQLite records, blobs on the session's SeaweedFS in
    a bucket of its own); chat_service checks attachments with it, both gateways use it."""
    access_key, secret_key = s3_server.credentials
    media = MediaServiceProcess(
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
            "CHATMESH_MEDIA_RECORDS": str(tmp_path / "media.db"),
            "CHATMESH_MEDIA_BLOBS": "s3",
            "CHATMESH_S3_ENDPOINT": s3_server.url,
            "CHATMESH_S3_BUCKET": f"faults-{uuid.uuid4().hex[:8]}",
            "CHATMESH_S3_ACCESS_KEY": access_key,
            "CHATMESH_S3_SECRET_KEY": secret_key,
        },
        tmp_path / "media.log",
    )
    chat_env = {"CHATMESH_SERVICE_SECRET": SERVICE_SECRET, "CHATMESH_MEDIA_TARGET": media.target}
    async for cluster in _start_cluster(nats_server.url, tmp_path, chat_env, media=media):
        yield cluster
