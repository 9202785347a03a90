"""The Bus contract, run against both implementations (InProcessBus and NatsBus)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from servers.nats import NatsServer

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.bus.nats import NatsBus, NatsSettings

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["inprocess", pytest.param("nats", marks=pytest.mark.nats)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "inprocess":
        impl: Bus = InProcessBus()
    else:
        server: NatsServer = request.getfixturevalue("nats_server")
        nats_bus = await NatsBus.connect(NatsSettings(urls=(server.url,)))
        await nats_bus.ensure_stream()
        impl = nats_bus
    try:
        yield impl
    finally:
        await impl.close()


class Received:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, subject: str, payload: bytes) -> None:
        self.items.append((subject, payload))
        self._changed.set()

    async def wait(self, count: int) -> list[bytes]:
        async with asyncio.timeout(5):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return [payload for _subject, payload in self.items]


async def _settle(bus: Bus) -> None:
    """Lets a subscription reach the server (NATS) before the publishes that must hit it."""
    if isinstance(bus, NatsBus):
        await bus.flush()


def _subject() -> str:
    return f"chatmesh.test.{uuid.uuid4().hex}"


async def test_subscribers_get_payloads_in_publish_order(bus: Bus) -> None:
    """Every subscriber of a subject gets each payload, in publish order."""
    subject = _subject()
    first, second = Received(), Received()
    await bus.subscribe(subject, first)
    await bus.subscribe(subject, second)
    await _settle(bus)
    for i in range(50):
        await bus.publish(subject, str(i).encode())
    expected = [str(i).encode() for i in range(50)]
    assert await first.wait(50) == expected
    assert await second.wait(50) == expected


async def test_unsubscribed_handlers_get_nothing_more(bus: Bus) -> None:
    """After unsubscribe, later publishes do not reach the handler."""
    subject = _subject()
    gone, staying = Received(), Received()
    subscription = await bus.subscribe(subject, gone)
    await bus.subscribe(subject, staying)
    await _settle(bus)
    await bus.publish(subject, b"1")
    await gone.wait(1)
    await subscription.unsubscribe()
    await _settle(bus)
    await bus.publish(subject, b"2")
    assert await staying.wait(2) == [b"1", b"2"]
    assert [p for _s, p in gone.items] == [b"1"]


async def test_a_failing_handler_does_not_stop_the_others(bus: Bus) -> None:
    """A handler that raises is logged; other subscribers and later payloads still arrive."""
    subject = _subject()

    def broken(_subject: str, _payload: bytes) -> None:
        raise RuntimeError("boom")

    received = Received()
    await bus.subscribe(subject, broken)
    await bus.subscribe(subject, received)
    await _settle(bus)
    await bus.publish(subject, b"a")
    await bus.publish(subject, b"b")
    assert await received.wait(2) == [b"a", b"b"]


async def test_other_subjects_are_not_delivered(bus: Bus) -> None:
    """A subscription gets its own subject only."""
    mine, other = _subject(), _subject()
    received = Received()
    await bus.subscribe(mine, received)
    await _settle(bus)
    await bus.publish(other, b"not mine")
    await bus.publish(mine, b"mine")
    assert await received.wait(1) == [b"mine"]


async def test_durable_publish_returns_after_the_event_is_stored(bus: Bus) -> None:
    """publish_durable returns normally for a new id and for a repeated one."""
    cid = uuid.uuid4().hex
    await bus.publish_durable(f"chatmesh.events.{cid}.created", b"x", f"{cid}:1")
    await bus.publish_durable(f"chatmesh.events.{cid}.created", b"x", f"{cid}:1")


async def test_on_reconnect_returns_a_remover(bus: Bus) -> None:
    """on_reconnect callbacks can be removed (streams do so when they end)."""
    calls: list[int] = []
    remove = bus.on_reconnect(lambda: calls.append(1))
    remove()
    remove()  # twice is harmless
    assert calls == []
