"""Latency between gateway g1 and replica a longer than g1's call deadline: sends are stored
but answered DEADLINE_EXCEEDED; their retries with the same key return the stored message, so
nothing is lost and nothing is stored twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from .check import Figures
from .profile import Profile, current_profile
from .scenario import SHORT_DEADLINE_S, Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def test_answers_lost_to_a_deadline_are_recovered_by_retries(
    short_deadline_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """Twice the deadline each way for the outage: g1's sends time out after their write."""
    proxy = short_deadline_cluster.proxy

    async def fault() -> None:
        proxy.set_latency(2 * SHORT_DEADLINE_S)
        try:
            await asyncio.sleep(max(profile.outage_s, 4 * SHORT_DEADLINE_S))
        finally:
            proxy.pass_through()

    figures = await run_fault(
        short_deadline_cluster, profile, "proxy-latency-past-deadline", fault, record_figures
    )
    assert figures.retries > 0, "no send on g1 outlived its deadline"
