"""The network between gateway g1 and replica a misbehaves while devices send: open connections
cut, then added latency, then new connections dropped and the open ones cut again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from .check import Figures
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def test_cut_and_slow_gateway_to_chat_links_lose_nothing(
    nats_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """Cut, 200 ms latency, then dropping new connections for the outage: g1's sends retry."""
    proxy = nats_cluster.proxy

    async def fault() -> None:
        try:
            assert proxy.cut() > 0, "g1 had no open connection to a"
            proxy.set_latency(0.2)
            await asyncio.sleep(profile.outage_s)
            proxy.drop_new()
            proxy.cut()
            await asyncio.sleep(profile.outage_s)
        finally:
            proxy.pass_through()

    await run_fault(nats_cluster, profile, "proxy-cut-latency-drop", fault, record_figures)
