"""notify_service in cluster mode, as `chatmesh serve notify` runs it: configured from the
environment (CHATMESH_MODE=cluster, NATS bus, CHATMESH_NOTIFY_STORE=redis) on a real nats-server
and redis-server, with chat_service and presence_service on the same JetStream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from chatmesh_common.bus.nats import NatsBus, NatsSettings
from chatmesh_common.clock import SystemClock
from notify_service.providers.base import Platform
from notify_service.server import build_notify_service
from notify_service.store.base import PushKind
from notify_service.store.redis import RedisNotifyStore
from tests.servers.nats import NatsServer
from tests.servers.redis import RedisServer

from .support import WAIT_S, RecordingProvider, notify_config_from_env, start_harness

pytestmark = [pytest.mark.timeout(60), pytest.mark.nats, pytest.mark.redis]


@pytest.fixture
async def nats_bus(nats_server: NatsServer) -> AsyncIterator[NatsBus]:
    settings = NatsSettings(urls=(nats_server.url,), reconnect_wait_s=0.1)
    bus = await NatsBus.connect(settings)
    await bus.ensure_stream()
    # The session's stream holds every earlier test's events, and notify's consumer starts at
    # the beginning of the log: without a purge it would first work through thousands of them.
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().purge_stream(settings.stream)
    finally:
        await client.close()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
def cluster_env(nats_server: NatsServer, redis_server: RedisServer) -> dict[str, str]:
    return {
        "CHATMESH_MODE": "cluster",
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": nats_server.url,
        "CHATMESH_NOTIFY_STORE": "redis",
        "CHATMESH_REDIS_URL": redis_server.url,
        # A prefix per test: tests share one redis-server and never see each other's keys.
        "CHATMESH_NOTIFY_REDIS_PREFIX": f"test:{uuid.uuid4().hex[:8]}:",
    }


async def test_cluster_notify_pushes_through_the_redis_store(
    tmp_path: Path, nats_bus: NatsBus, cluster_env: dict[str, str]
) -> None:
    """Cluster mode accepts the Redis store; an offline member gets one push, recorded in Redis."""
    async for harness in start_harness(tmp_path, bus=nats_bus, notify_env=cluster_env):
        config = harness.notify.component.config
        assert (config.mode, config.store, config.bus) == ("cluster", "redis", "nats")
        assert isinstance(harness.notify.component.store, RedisNotifyStore)
        alice, bob = harness.client("alice"), harness.client("bob")
        await harness.register(bob, "tok-bob")
        conversation = await alice.direct(bob)
        sent = await harness.send(alice, conversation, "over redis")
        (push,) = await harness.provider.wait_for("tok-bob")
        assert push.body == "over redis"
        await harness.settle()
        assert len(harness.provider.to("tok-bob")) == 1
        seq = sent.message.seq
        store = harness.notify.component.store
        assert await store.was_sent("bob", "default", conversation, seq, PushKind.MESSAGE)


async def test_two_replicas_on_one_redis_push_each_message_once(
    tmp_path: Path, nats_bus: NatsBus, cluster_env: dict[str, str]
) -> None:
    """Two notify_service replicas share the JetStream consumer and the Redis queue: a burst of
    messages in many conversations is pushed, each message once, whichever replica took it."""
    async for harness in start_harness(tmp_path, bus=nats_bus, notify_env=cluster_env):
        second = build_notify_service(
            notify_config_from_env(cluster_env, harness.chat.port, harness.presence.port),
            providers={Platform.APNS: harness.provider},
            clock=SystemClock(),
        )
        await second.start()
        try:
            bob = harness.client("bob")
            await harness.register(bob, "tok-bob")
            senders = [harness.client(f"user{i}") for i in range(8)]
            conversations = [await sender.direct(bob) for sender in senders]
            for sender, conversation in zip(senders, conversations, strict=True):
                await harness.send(sender, conversation, f"from {sender.user_id}")
            pushes = await harness.provider.wait_for("tok-bob", count=len(senders))
            await harness.settle()
            pushes = harness.provider.to("tok-bob")
            assert sorted(p.data["conversation_id"] for p in pushes) == sorted(conversations)
        finally:
            await second.stop()


async def test_a_push_a_dead_replica_held_is_sent_by_another_after_its_lease(
    tmp_path: Path, nats_bus: NatsBus, cluster_env: dict[str, str]
) -> None:
    """A replica that claimed a push and died before the provider answered (its delivery loop
    and calls are cut off; nothing is written back) holds it only for CHATMESH_NOTIFY_LEASE_S:
    then another replica claims and sends it."""
    env = {**cluster_env, "CHATMESH_NOTIFY_LEASE_S": "1", "CHATMESH_PUSH_TIMEOUT_S": "0.5"}
    async for harness in start_harness(tmp_path, bus=nats_bus, notify_env=env):
        harness.provider.delay_s = 30.0
        alice, bob = harness.client("alice"), harness.client("bob")
        await harness.register(bob, "tok-bob")
        conversation = await alice.direct(bob)
        await harness.send(alice, conversation, "held")
        async with asyncio.timeout(WAIT_S):
            # The provider signals only when a call ends; this one hangs, so poll its calls.
            while not harness.provider.calls:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await harness.notify.component.delivery.stop(0.0)
        other = RecordingProvider()
        second = build_notify_service(
            notify_config_from_env(env, harness.chat.port, harness.presence.port),
            providers={Platform.APNS: other},
            clock=SystemClock(),
        )
        await second.start()
        try:
            (push,) = await other.wait_for("tok-bob")
            assert push.body == "held"
            assert harness.provider.to("tok-bob") == []
        finally:
            await second.stop()
