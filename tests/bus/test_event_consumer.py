"""EventConsumer's lanes: each conversation's events in log order, conversations side by side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import InProcessBus
from chatmesh_common.bus.event_consumer import EventConsumer

SUBJECT = "chatmesh.events.test"


async def publish(bus: InProcessBus, conversation_id: str, seq: int) -> None:
    event = events_pb2.ConversationEvent(conversation_id=conversation_id, seq=seq)
    await bus.publish_durable(
        f"{SUBJECT}.{conversation_id}", event.SerializeToString(), f"{conversation_id}:{seq}"
    )


async def test_a_slow_conversation_does_not_hold_up_others_and_each_keeps_its_order(
    tmp_path: Path,
) -> None:
    bus = InProcessBus(tmp_path / "log.db")
    seen: list[tuple[str, int]] = []
    release_slow = asyncio.Event()
    fast_done = asyncio.Event()

    async def handler(event: events_pb2.ConversationEvent) -> None:
        if event.conversation_id == "slow" and event.seq == 1:
            await release_slow.wait()
        seen.append((event.conversation_id, event.seq))
        if (event.conversation_id, event.seq) == ("fast", 3):
            fast_done.set()

    for seq in (1, 2, 3):
        await publish(bus, "slow", seq)
        await publish(bus, "fast", seq)
    consumer = EventConsumer(bus, "lanes", [f"{SUBJECT}.>"], handler, lanes=4)
    handled = asyncio.create_task(consumer.run_once())
    await asyncio.wait_for(fast_done.wait(), 10)
    assert [e for e in seen if e[0] == "fast"] == [("fast", 1), ("fast", 2), ("fast", 3)]
    assert not [e for e in seen if e[0] == "slow"], "the slow conversation's first event waits"
    release_slow.set()
    assert await asyncio.wait_for(handled, 10) == 6
    assert [e for e in seen if e[0] == "slow"] == [("slow", 1), ("slow", 2), ("slow", 3)]
    await consumer.stop()
    await bus.close()


async def test_a_failed_event_comes_again_and_the_rest_are_acked(tmp_path: Path) -> None:
    bus = InProcessBus(tmp_path / "log.db")
    tries: dict[tuple[str, int], int] = {}

    async def handler(event: events_pb2.ConversationEvent) -> None:
        key = (event.conversation_id, event.seq)
        tries[key] = tries.get(key, 0) + 1
        if key == ("a", 2) and tries[key] == 1:
            raise RuntimeError("chat unavailable")

    for conversation_id in ("a", "b"):
        for seq in (1, 2):
            await publish(bus, conversation_id, seq)
    consumer = EventConsumer(bus, "retries", [f"{SUBJECT}.>"], handler, lanes=2, retry_delay_s=0.05)
    assert await consumer.run_once() == 4
    async with asyncio.timeout(10):
        while tries.get(("a", 2), 0) < 2:
            await consumer.run_once(timeout_s=0.2)
    assert tries == {("a", 1): 1, ("a", 2): 2, ("b", 1): 1, ("b", 2): 1}
    await consumer.stop()
    await bus.close()


def test_lanes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lanes"):
        EventConsumer(InProcessBus(), "x", [f"{SUBJECT}.>"], lambda e: asyncio.sleep(0), lanes=0)
