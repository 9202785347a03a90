"""The push consumer on JetStream (a cluster's bus): chat_service, presence_service and
notify_service on a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatmesh_common.bus.nats import NatsBus, NatsSettings
from tests.servers.nats import NatsServer

from .support import start_harness

pytestmark = [pytest.mark.timeout(60), pytest.mark.nats]


@pytest.fixture
async def nats_bus(nats_server: NatsServer) -> AsyncIterator[NatsBus]:
    bus = await NatsBus.connect(NatsSettings(urls=(nats_server.url,), reconnect_wait_s=0.1))
    await bus.ensure_stream()
    try:
        yield bus
    finally:
        await bus.close()


async def test_offline_member_gets_a_push_through_jetstream(
    tmp_path: Path, nats_bus: NatsBus
) -> None:
    """The durable consumer `notify` reads chat's events from JetStream and pushes once."""
    async for harness in start_harness(tmp_path, bus=nats_bus):
        alice, bob = harness.client("alice"), harness.client("bob")
        await harness.register(bob, "tok-bob")
        conversation = await alice.direct(bob)
        await harness.send(alice, conversation, "over nats")
        (push,) = await harness.provider.wait_for("tok-bob")
        assert push.body == "over nats"
        await harness.settle()
        assert len(harness.provider.to("tok-bob")) == 1
