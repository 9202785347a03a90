"""SIGKILL of a gateway holding many sockets (profile.sockets idle subscribers, spread over
groups with one sender each) while devices send: every one of them reconnects, to the restarted
gateway or the other one, resumes from the last seq it saw and misses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from .check import Figures
from .load import Device
from .profile import Profile, current_profile
from .scenario import Cluster, Group, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.timeout(current_profile().timeout_s),
]

DOOMED = 1  # g2: its subscribers move to g1 (and its chat replica a, behind the proxy)
# A hang guard for every socket to be back (more sockets, more time): not a timing assertion.
RESUME_GUARD_S = 60.0 + current_profile().sockets * 0.03


async def test_sigkill_of_a_gateway_with_many_sockets_all_resume_with_no_gap(
    nats_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """A gateway with profile.sockets subscribers killed mid-load and restarted: all resume."""
    doomed = nats_cluster.gateways[DOOMED]
    home: list[Device] = []
    extra: dict[str, float] = {"sockets": profile.sockets}

    async def keep(_groups: Sequence[Group], devices: Sequence[Device]) -> None:
        home.extend(d for d in devices if d.urls[0] == doomed.url and not d.sends)
        assert len(home) == profile.sockets

    async def fault() -> None:
        killed_at = time.monotonic()
        await doomed.kill()
        await asyncio.sleep(profile.outage_s)
        await doomed.start()
        try:
            async with asyncio.timeout(RESUME_GUARD_S):
                while not all(d.connected_at >= killed_at for d in home):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        except TimeoutError:
            behind = [d for d in home if d.connected_at < killed_at]
            pytest.fail(
                f"{len(behind)} of {len(home)} sockets not back after {RESUME_GUARD_S:.0f} s:"
                + "".join(f"\n  {d.name}: {d.errors[-2:]}" for d in behind[:10])
            )
        extra["resumed_s"] = max(d.connected_at for d in home) - killed_at

    figures = await run_fault(
        nats_cluster,
        profile,
        "gateway-sigkill-sockets",
        fault,
        record_figures,
        extra,
        prepare=keep,
        subscribers=profile.sockets,
        subscriber_gateway=DOOMED,
    )
    assert figures.reconnects >= profile.sockets
