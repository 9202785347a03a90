"""GetHistory's direction: a page can start after any seq, 0 included, and read either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from chat_service.store.base import HistoryDirection

from .support import Client, expect_code, seqs

pytestmark = pytest.mark.timeout(30)

FORWARD = pb.HISTORY_DIRECTION_FORWARD
BACKWARD = pb.HISTORY_DIRECTION_BACKWARD


async def _conversation_of(alice: Client, messages: int) -> str:
    cid = await alice.group()
    for i in range(messages):
        await alice.send(cid, f"m{i + 1}")
    return cid


async def test_forward_from_zero_starts_at_the_first_message(
    client: Callable[[str], Client],
) -> None:
    """FORWARD with after_seq 0 returns seq 1.. first, not the newest page."""
    alice = client("alice")
    cid = await _conversation_of(alice, 7)
    page = await alice.history(cid, after_seq=0, limit=3, direction=FORWARD)
    assert (seqs(page.messages), page.has_more, page.last_seq) == ([1, 2, 3], True, 7)
    assert [m.body for m in page.messages] == ["m1", "m2", "m3"]


async def test_forward_pages_walk_the_whole_conversation(client: Callable[[str], Client]) -> None:
    """Forward pages from 0, each after the last seq of the one before, see every message once."""
    alice = client("alice")
    cid = await _conversation_of(alice, 7)
    walked: list[int] = []
    after = 0
    while True:
        page = await alice.history(cid, after_seq=after, limit=3, direction=FORWARD)
        walked += seqs(page.messages)
        if not page.has_more:
            break
        after = page.messages[-1].seq
    assert walked == list(range(1, 8))


async def test_forward_below_before_seq_starts_at_the_first_message(
    client: Callable[[str], Client],
) -> None:
    """FORWARD with before_seq alone reads the oldest messages below it, oldest first."""
    alice = client("alice")
    cid = await _conversation_of(alice, 7)
    page = await alice.history(cid, before_seq=6, limit=3, direction=FORWARD)
    assert (seqs(page.messages), page.has_more) == ([1, 2, 3], True)


async def test_backward_above_after_seq_takes_the_newest(client: Callable[[str], Client]) -> None:
    """BACKWARD with after_seq alone reads newest first, down to after_seq."""
    alice = client("alice")
    cid = await _conversation_of(alice, 7)
    page = await alice.history(cid, after_seq=4, limit=2, direction=BACKWARD)
    assert (seqs(page.messages), page.has_more) == ([7, 6], True)
    rest = await alice.history(cid, after_seq=4, before_seq=6, direction=BACKWARD)
    assert (seqs(rest.messages), rest.has_more) == ([5], False)


async def test_unspecified_direction_keeps_the_old_reading(client: Callable[[str], Client]) -> None:
    """Without a direction: newest first, unless after_seq alone is given (then oldest first)."""
    alice = client("alice")
    cid = await _conversation_of(alice, 7)
    assert seqs((await alice.history(cid, limit=3)).messages) == [7, 6, 5]
    assert seqs((await alice.history(cid, after_seq=2, limit=3)).messages) == [3, 4, 5]
    assert seqs((await alice.history(cid, after_seq=2, before_seq=7)).messages) == [6, 5, 4, 3]


async def test_unknown_direction_is_refused_naming_the_field(
    client: Callable[[str], Client],
) -> None:
    """A direction value the API does not define is INVALID_ARGUMENT about `direction`."""
    alice = client("alice")
    cid = await _conversation_of(alice, 1)
    details = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        alice.history(cid, direction=cast(pb.HistoryDirection, 7)),
    )
    assert "direction" in details


def test_store_directions_have_the_api_values() -> None:
    """The chat layer hands the API's direction to the store as is: the values must agree."""
    assert {d.name: int(d) for d in HistoryDirection} == {
        "BACKWARD": pb.HISTORY_DIRECTION_BACKWARD,
        "FORWARD": pb.HISTORY_DIRECTION_FORWARD,
    }
