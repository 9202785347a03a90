"""SharedLookup (notify_service/shared_lookup.py): one backend call in flight; callers that
come while it runs share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from notify_service.shared_lookup import SharedLookup

pytestmark = pytest.mark.timeout(10)


class Backend:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = False

    async def lookup(self, user_ids: Sequence[str]) -> Mapping[str, int]:
        self.calls.append(list(user_ids))
        await self.release.wait()
        if self.fail:
            raise ConnectionError("backend down")
        return {u: len(u) for u in user_ids if u != "absent"}


async def test_a_lone_caller_gets_a_call_of_its_own() -> None:
    backend = Backend()
    backend.release.set()
    shared = SharedLookup(backend.lookup)
    assert await shared.ask(["ab", "absent"]) == {"ab": 2}
    assert await shared.ask(["abc"]) == {"abc": 3}
    assert await shared.ask([]) == {}
    assert backend.calls == [["ab", "absent"], ["abc"]]


async def test_callers_during_a_call_share_the_next_one() -> None:
    backend = Backend()
    shared = SharedLookup(backend.lookup)
    first = asyncio.create_task(shared.ask(["a"]))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(shared.ask(users)) for users in (["bb", "a"], ["ccc"], ["bb"])]
    await asyncio.sleep(0.01)
    backend.release.set()
    assert await first == {"a": 1}
    assert [await t for t in later] == [{"bb": 2, "a": 1}, {"ccc": 3}, {"bb": 2}]
    assert backend.calls == [["a"], ["bb", "a", "ccc"]]


async def test_a_failed_call_fails_its_callers_only() -> None:
    backend = Backend()
    backend.fail = True
    shared = SharedLookup(backend.lookup)
    callers = [asyncio.create_task(shared.ask([u])) for u in ("a", "b")]
    backend.release.set()
    for caller in callers:
        with pytest.raises(ConnectionError):
            await caller
    backend.fail = False
    assert await shared.ask(["cc"]) == {"cc": 2}


async def test_a_cancelled_caller_leaves_the_call_to_the_others() -> None:
    backend = Backend()
    shared = SharedLookup(backend.lookup)
    gone = asyncio.create_task(shared.ask(["a"]))
    stays = asyncio.create_task(shared.ask(["bb"]))
    await asyncio.sleep(0.01)
    gone.cancel()
    backend.release.set()
    assert await stays == {"bb": 2}
    with pytest.raises(asyncio.CancelledError):
        await gone
