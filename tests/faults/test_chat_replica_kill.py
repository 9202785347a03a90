"""SIGKILL of a chat_service replica while devices send: the other replica keeps serving, the
killed one is started again, and nothing acknowledged is lost."""

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


async def test_sigkill_of_a_chat_replica_loses_no_acknowledged_message(
    nats_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """Replica a killed mid-load and restarted: sends via g1 retry until a is back."""
    doomed = nats_cluster.chats[0]

    async def fault() -> None:
        await doomed.kill()
        await asyncio.sleep(profile.outage_s)
        await doomed.start()

    await run_fault(nats_cluster, profile, "chat-replica-sigkill", fault, record_figures)
