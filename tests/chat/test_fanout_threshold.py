"""Hybrid fanout by member count: a conversation crossing the threshold keeps every member's
stream complete, whichever way it crosses (streams follow the conversation subject or not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from chat_service.fanout import Fanout
from chatmesh_common.bus import InProcessBus

from .support import ChatHarness

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    harness = ChatHarness(tmp_path / "data", fanout_read_threshold=2)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


def test_threshold_decides_the_fanout_mode() -> None:
    """At most `read_threshold` members: on write; more: on read."""
    fanout = Fanout(InProcessBus(), store=None, read_threshold=2)  # type: ignore[arg-type]
    assert not fanout.fans_out_on_read(2)
    assert fanout.fans_out_on_read(3)


async def test_a_group_crossing_the_threshold_both_ways_loses_nothing(
    small: ChatHarness,
) -> None:
    """Up past the threshold and back down: a member's stream gets every event once, in order."""
    alice, bob, carol = small.client("alice"), small.client("bob"), small.client("carol")
    group = await alice.group(bob)
    reader = await bob.subscribe()
    await alice.send(group, "before")  # 2 members: on write
    await alice.add(group, carol)  # 3 members: on read from here
    await alice.send(group, "above")
    # Published on the conversation subject only: it arrives because the stream followed it.
    events = await reader.events_until(lambda e: e.seq == 3)
    await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=group, user_id="carol"), metadata=alice.md
    )  # back to 2: on write
    await alice.send(group, "below again")
    events += await reader.events_until(lambda e: e.seq == 5)
    seqs = [e.seq for e in events if e.conversation_id == group and e.seq]
    assert seqs == [1, 2, 3, 4, 5]
    added = [e for e in events if e.HasField("membership_changed")]
    assert [e.membership_changed.member_count for e in added] == [3, 2]
    reader.close()
