"""The JetStream side of the durable event stream: stream and consumer set-up, and the relay's
promise that every acknowledged event reaches JetStream even when its writer dies before
publishing. Dedupe and durable consumers are in the Bus contract (tests/bus)."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from chat_service.events import durable_subject
from chat_service.store.base import NewMessage
from chat_service.store.sqlite import SqliteChatStore
from chatmesh_common.bus.nats import NatsBus
from chatmesh_common.ids import new_id
from chatmesh_common.subjects import NOTIFY_FILTERS

from .cluster import Api
from .conftest import Cluster
from .jetstream import wait_stored
from .test_cluster import DIRECT, GROUP, Device

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]


async def test_ensure_stream_and_consumers_are_idempotent(nats_bus: NatsBus) -> None:
    """Starting a second replica re-applies the same stream and consumer settings."""
    await nats_bus.ensure_stream()
    await nats_bus.ensure_consumers(["search-test"])
    await nats_bus.ensure_consumers(["search-test"])
    info = await nats_bus.js.consumer_info(nats_bus.settings.stream, "search-test")
    assert info.config.durable_name == "search-test"


async def test_ensure_consumers_leaves_the_filters_a_service_set(nats_bus: NatsBus) -> None:
    """A replica starting later does not reset a consumer its service narrowed to its kinds."""
    name = f"notify-{uuid.uuid4().hex[:8]}"
    consumer = await nats_bus.durable_consumer(name, NOTIFY_FILTERS, ack_wait_s=5)
    await consumer.close()
    await nats_bus.ensure_consumers([name])
    info = await nats_bus.js.consumer_info(nats_bus.settings.stream, name)
    assert (info.config.filter_subject, info.config.ack_wait) == (NOTIFY_FILTERS[0], 5)


async def test_an_event_whose_writer_died_before_publishing_reaches_jetstream_and_devices(
    cluster: Cluster, nats_bus: NatsBus
) -> None:
    """Written durably by a 'replica' that never published: the relay of another delivers it."""
    a, _b = cluster.chats
    _g1, g2 = cluster.gateways
    direct = await Api(a, "alice").create(DIRECT, "bob")
    bob = await Device.connect(g2.url, "bob", "phone")
    # The dead replica: the same SQLite file, a durable write, and no publish at all.
    store = SqliteChatStore(a.data_dir / "chat.sqlite3")
    await store.open()
    now = time.time()
    result = await store.append_message(
        NewMessage(direct, "alice", "orphan", new_id(now), now, 1, "written, never published")
    )
    await store.close()
    assert result.message.seq == 1
    assert await wait_stored(nats_bus, direct, {1}) == [1]
    await bob.wait_for({direct: 1})
    await bob.client.close()


async def test_kill_9_mid_burst_every_acknowledged_message_reaches_jetstream(
    cluster: Cluster, nats_bus: NatsBus
) -> None:
    """SIGKILL of a replica between writes and publishes: the survivor relays what it acked."""
    a, b = cluster.chats
    group = await Api(a, "alice").create(GROUP, "bob", "carol")
    acked: list[int] = []
    stop = asyncio.Event()

    async def sender(user: str, index: int) -> None:
        api = Api(b, user)
        for i in range(1000):
            if stop.is_set():
                return
            try:
                reply = await api.stub.SendMessage(
                    api_request(group, f"{user}-{index}-{i}"), metadata=api.md, timeout=2
                )
            except grpc.aio.AioRpcError:
                return
            acked.append(int(reply.message.seq))
            if len(acked) >= 150:
                stop.set()

    tasks = [asyncio.create_task(sender(u, i)) for i in range(8) for u in ("alice", "carol")]
    async with asyncio.timeout(20):
        await stop.wait()
    await b.kill()
    await asyncio.gather(*tasks)
    stored = await wait_stored(nats_bus, group, set(acked))
    assert set(acked) <= set(stored)


def api_request(conversation_id: str, client_msg_id: str) -> object:
    from chatmesh.chat.v1 import chat_service_pb2 as pb

    return pb.SendMessageRequest(
        conversation_id=conversation_id, client_msg_id=client_msg_id, body="burst"
    )


def test_durable_subjects_name_conversation_and_kind() -> None:
    """Consumers can filter the stream by conversation (`chatmesh.events.<id>.>`) or kind."""
    from chatmesh.events.v1 import events_pb2

    event = events_pb2.ConversationEvent(conversation_id="c1", seq=3)
    event.message_created.SetInParent()
    assert durable_subject(event) == "chatmesh.events.c1.created"
