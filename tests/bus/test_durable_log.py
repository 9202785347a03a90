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


async def test_a_polling_log_takes_what_another_connection_appends(tmp_path: Path) -> None:
    """A fetch waiting on a log opened with poll_s returns an event another process (here
    another connection to the file) appends, well before its own timeout."""
    path = tmp_path / "events.sqlite3"
    writer = DurableLog(path)
    reader = DurableLog(path, poll_s=0.01)
    consumer = reader.consumer("reader", "chatmesh.events.>", ack_wait_s=10)
    assert await consumer.fetch(10, 0.05) == []
    # Its timeout is far beyond the wait_for below: only the poll can end it in time.
    fetching = asyncio.create_task(consumer.fetch(10, 60.0))
    await asyncio.sleep(0.05)
    writer.append("chatmesh.events.c.created", b"from elsewhere", "c:1")
    messages = await asyncio.wait_for(fetching, 10)
    assert [m.data for m in messages] == [b"from elsewhere"]
    await messages[0].ack()
    # The ack is the reader's: the writer's connection sees nothing in flight.
    assert writer.next_deadline("reader") is None
    reader.close()
    writer.close()


async def test_a_log_without_poll_s_waits_for_its_own_appends_only(tmp_path: Path) -> None:
    """Without poll_s a commit of another connection does not end the wait (one process)."""
    path = tmp_path / "events.sqlite3"
    writer = DurableLog(path)
    reader = DurableLog(path)
    consumer = reader.consumer("reader", "chatmesh.events.>", ack_wait_s=10)
    fetching = asyncio.create_task(consumer.fetch(10, 0.3))
    await asyncio.sleep(0.05)
    writer.append("chatmesh.events.c.created", b"unseen", "c:1")
    assert await asyncio.wait_for(fetching, 5) == []
    assert [m.data for m in await consumer.fetch(10, 0.1)] == [b"unseen"]
    reader.close()
    writer.close()
