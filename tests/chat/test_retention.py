"""Retention end to end: a direct conversation with 1-day retention loses its old messages from
history, unread and replay, keeps gapless seqs from its horizon, and a group without retention
keeps everything. Time is moved with a ManualClock given to the sweeper (no sleeping)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat_service.config import ChatConfig
from chat_service.retention import DAY_S, RetentionSweeper, retention_periods
from chat_service.store.base import Kind
from chatmesh_common.clock import ManualClock

from .support import ChatHarness, seqs

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    harness = ChatHarness(tmp_path / "chat-data", retention_direct_days=1)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def test_retention_settings_from_env() -> None:
    env = {
        "CHATMESH_JWT_SECRET": "s",
        "CHATMESH_RETENTION_DIRECT_DAYS": "1",
        "CHATMESH_RETENTION_CHANNEL_DAYS": "30",
        "CHATMESH_RETENTION_SWEEP_S": "60",
    }
    config = ChatConfig.from_env(env)
    assert (config.retention_direct_days, config.retention_group_days) == (1, 0)
    assert (config.retention_channel_days, config.retention_sweep_s) == (30, 60.0)
    assert retention_periods(config) == {Kind.DIRECT: DAY_S, Kind.CHANNEL: 30 * DAY_S}
    defaults = ChatConfig.from_env({"CHATMESH_JWT_SECRET": "s"})
    assert retention_periods(defaults) == {}
    assert defaults.retention_sweep_s == 3600.0


async def test_direct_retention_drops_old_messages_and_group_keeps_all(
    harness: ChatHarness,
) -> None:
    alice, bob = harness.client("alice"), harness.client("bob")
    direct = await alice.direct(bob)
    group = await alice.group(bob)
    for i in range(3):
        await alice.send(direct, f"old {i}")
        await alice.send(group, f"old {i}")
    cut = time.time()
    for i in range(2):
        await alice.send(direct, f"new {i}")
        await alice.send(group, f"new {i}")

    # A day after `cut`: the direct's first three messages are past their 1-day retention.
    assert harness.server is not None
    clock = ManualClock(start=cut + DAY_S)
    sweeper = RetentionSweeper(
        harness.server.parts.store, retention_periods(harness.config), clock=clock, batch=2
    )
    assert await sweeper.sweep() == 3
    assert await sweeper.sweep() == 0

    assert seqs(await bob.all_messages(direct)) == [4, 5]
    assert (await bob.conversation(direct)).unread_count == 2
    assert seqs(await bob.all_messages(group)) == [1, 2, 3, 4, 5]
    assert (await bob.conversation(group)).unread_count == 5
    # A resume cursor below the horizon replays from the horizon, gapless from there.
    reader = await bob.subscribe((direct, 1))
    try:
        assert [e.seq for e in reader.replayed if e.conversation_id == direct] == [4, 5]
        assert (await alice.send(direct, "after")).message.seq == 6
        assert (await reader.next_event()).seq == 6
    finally:
        reader.close()
    assert seqs(await bob.all_messages(direct)) == [4, 5, 6]

    # Time moves on: everything in the direct expires; seqs are never reused.
    clock.advance(DAY_S)
    assert await sweeper.sweep() == 3
    assert await bob.all_messages(direct) == []
    assert (await bob.conversation(direct)).unread_count == 0
    assert (await alice.send(direct, "later")).message.seq == 7
    assert seqs(await bob.all_messages(group)) == [1, 2, 3, 4, 5]


async def test_the_wired_sweeper_runs_on_the_service_clock(tmp_path: Path) -> None:
    """The service's own sweeper and its messages' timestamps follow the clock it was built with."""
    clock = ManualClock(start=time.time())
    harness = ChatHarness(tmp_path / "chat-data", clock=clock, retention_direct_days=1)
    await harness.start()
    try:
        assert harness.server is not None
        alice, bob = harness.client("alice"), harness.client("bob")
        direct = await alice.direct(bob)
        for i in range(2):
            await alice.send(direct, f"old {i}")
        sweeper = harness.server.parts.sweeper
        assert await sweeper.sweep() == 0, "nothing is a day old yet"
        clock.advance(DAY_S + 1)
        assert await sweeper.sweep() == 2
        conversation = await harness.server.parts.store.get_conversation(direct)
        assert conversation is not None and conversation.first_seq == 3
    finally:
        await harness.stop()
