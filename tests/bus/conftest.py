"""The `harness` fixture: one bus per param, with what the contract needs to drive it.

* `memory`: InProcessBus with a memory-only durable log (restart tests skip);
* `file`: InProcessBus with its log in a SQLite file, reopened on `restart`;
* `nats`: NatsBus on the session's nats-server (marker `nats`), reconnected on `restart`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatmesh_common.bus import Bus, InProcessBus
from chatmesh_common.bus.nats import NatsBus, NatsSettings
from chatmesh_common.clock import ManualClock
from tests.servers.nats import NatsServer


class EmbeddedHarness:
    """Ack deadlines come from a manual clock, so no test waits for one."""

    ack_wait_s = 30.0

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._clock = ManualClock()
        self.bus: Bus = InProcessBus(path, self._clock)

    async def restart(self) -> None:
        await self.bus.close()
        self.bus = InProcessBus(self._path, self._clock)

    def pass_ack_wait(self) -> None:
        self._clock.advance(self.ack_wait_s + 1)

    async def settle(self) -> None:
        """Subscriptions take effect at once."""

    async def close(self) -> None:
        await self.bus.close()


class NatsHarness:
    """Real time: a short ack wait, passing while a fetch waits for the redelivery."""

    ack_wait_s = 1.0

    def __init__(self, settings: NatsSettings, bus: NatsBus) -> None:
        self._settings = settings
        self.nats = bus
        self.bus: Bus = bus

    @classmethod
    async def connect(cls, server: NatsServer) -> NatsHarness:
        settings = NatsSettings(urls=(server.url,), reconnect_wait_s=0.1)
        bus = await NatsBus.connect(settings)
        await bus.ensure_stream()
        return cls(settings, bus)

    async def restart(self) -> None:
        await self.nats.close()
        self.nats = await NatsBus.connect(self._settings)
        self.bus = self.nats

    def pass_ack_wait(self) -> None:
        """The fetch that waits for a redelivery lets the ack wait pass."""

    async def settle(self) -> None:
        await self.nats.flush()

    async def close(self) -> None:
        await self.nats.close()


async def _harness(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> EmbeddedHarness | NatsHarness:
    if kind == "nats":
        return await NatsHarness.connect(request.getfixturevalue("nats_server"))
    return EmbeddedHarness(tmp_path / "bus.sqlite3" if kind == "file" else None)


@pytest.fixture(params=["memory", "file", pytest.param("nats", marks=pytest.mark.nats)])
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EmbeddedHarness | NatsHarness]:
    impl = await _harness(request.param, request, tmp_path)
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture(params=["file", pytest.param("nats", marks=pytest.mark.nats)])
async def restartable_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EmbeddedHarness | NatsHarness]:
    """The buses whose durable log outlives a restart (a memory-only log cannot)."""
    impl = await _harness(request.param, request, tmp_path)
    try:
        yield impl
    finally:
        await impl.close()
