"""SIGKILL of a gateway while its devices send: they reconnect to the other gateway, resume from
the last seq they saw, and miss nothing; the killed gateway is started again."""

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


async def test_sigkill_of_a_gateway_its_devices_resume_with_no_gap(
    nats_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """Gateway g2 killed mid-load: its devices resume on g1; g2 comes back."""
    doomed = nats_cluster.gateways[1]

    async def fault() -> None:
        await doomed.kill()
        await asyncio.sleep(profile.outage_s)
        await doomed.start()

    await run_fault(nats_cluster, profile, "gateway-sigkill", fault, record_figures)
