"""What the embedded durable log does beyond the Bus contract: its retention, like the stream's
max age."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmesh_common.bus.durable_log import DurableLog
from chatmesh_common.clock import ManualClock

pytestmark = pytest.mark.timeout(10)


async def test_events_older_than_the_max_age_are_dropped(tmp_path: Path) -> None:
    """Past max_age_s an event is gone, also for a consumer that had it in flight."""
    clock = ManualClock()
    log = DurableLog(tmp_path / "events.sqlite3", clock, max_age_s=100)
    log.append("chatmesh.events.c.created", b"old", "c:1")
    consumer = log.consumer("reader", "chatmesh.events.>", ack_wait_s=10)
    assert [m.data for m in await consumer.fetch(10, 0.1)] == [b"old"]
    log.close()
    clock.advance(101)
    log = DurableLog(tmp_path / "events.sqlite3", clock, max_age_s=100)
    log.append("chatmesh.events.c.created", b"new", "c:2")
    consumer = log.consumer("reader", "chatmesh.events.>", ack_wait_s=10)
    assert [m.data for m in await consumer.fetch(10, 0.1)] == [b"new"]
    log.close()
