"""A send is acknowledged once it is durable: the live fanout runs after, never before the ack."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatmesh_common.bus import InProcessBus

from .support import ChatHarness, EventReader


class GatedBus(InProcessBus):
    """The in-process bus whose live publishes wait for a gate: a fanout that cannot finish."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    async def publish(self, subject: str, payload: bytes) -> None:
        if not self.gate.is_set():
            self.waiting += 1
            await self.gate.wait()
        await super().publish(subject, payload)


async def test_the_ack_does_not_wait_for_the_live_fanout(tmp_path: Path) -> None:
    """With every live publish stuck, the send is still acked; the member gets it once unstuck."""
    bus = GatedBus()
    harness = ChatHarness(tmp_path / "data", bus=bus)
    await harness.start()
    try:
        alice, bob = harness.client("alice"), harness.client("bob")
        group = await alice.group(bob)
        reader = EventReader(bob, [(group, 0)])
        await reader.read_replay()
        bus.gate.clear()
        async with asyncio.timeout(10):
            ack = await alice.send(group, "while the fanout is stuck")
        assert bus.waiting >= 1, "the fanout had not started when the ack came"
        bus.gate.set()
        events = await reader.events_until(lambda e: e.HasField("message_created"))
        assert events[-1].seq == ack.message.seq
        reader.close()
    finally:
        bus.gate.set()
        await harness.stop()
