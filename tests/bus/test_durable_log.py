"""What the embedded durable log does beyond the Bus contract: its retention, like the stream's
max age."""

from __future__ import annotations

import asyncio
import sqlite3
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


async def test_grouped_appends_are_committed_when_they_return(tmp_path: Path) -> None:
    """Appends of one loop turn share a commit: each returns with its event in the file (seen
    by another connection), repeats store nothing, and a consumer takes them in order."""
    path = tmp_path / "events.sqlite3"
    log = DurableLog(path)
    added = await asyncio.gather(
        *(log.append_grouped("chatmesh.events.c.created", b"%d" % i, f"c:{i}") for i in range(5)),
        log.append_grouped("chatmesh.events.c.created", b"again", "c:0"),
    )
    assert added == [True] * 5 + [False]
    other = sqlite3.connect(path)
    assert other.execute("SELECT data FROM log ORDER BY seq").fetchall() == [
        (b"%d" % i,) for i in range(5)
    ]
    other.close()
    assert not await log.append_grouped("chatmesh.events.c.created", b"again", "c:4")
    consumer = log.consumer("reader", "chatmesh.events.>", ack_wait_s=10)
    assert [m.data for m in await consumer.fetch(10, 0.1)] == [b"%d" % i for i in range(5)]
    log.close()
