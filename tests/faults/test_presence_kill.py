"""SIGKILL of presence_service while devices send: chat goes on untouched (presence is best
effort and never on the send path), no socket closes, and once presence_service is started again
presence and typing calls through a gateway answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.bus_nats.cluster import token
from tests.gateway.client import GatewayClient, ServerError

from .check import Figures
from .presence_probe import ONLINE_GUARD_S, WATCHED, WATCHER, until_online
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.redis,
    pytest.mark.timeout(current_profile().timeout_s),
]


async def _until_typing_answers(watcher: GatewayClient, conversation_id: str) -> None:
    async with asyncio.timeout(ONLINE_GUARD_S):
        while True:
            try:
                await watcher.call(
                    "typing", conversation_id=conversation_id, typing=True, timeout_s=10
                )
                return
            except (ServerError, TimeoutError):
                await asyncio.sleep(0.2)


async def test_sigkill_of_presence_leaves_chat_alone_and_presence_answers_after(
    presence_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """presence_service killed mid-load and restarted: nothing lost, presence and typing answer."""
    doomed = presence_cluster.presence
    assert doomed is not None
    extra: dict[str, float] = {}
    url = presence_cluster.gateways[1].url

    async def fault() -> None:
        watcher = await GatewayClient.connect(url, token(WATCHER, "watch"), timeout_s=15)
        try:
            # A conversation of the watcher's own, for its typing signals.
            side = await watcher.create_group(WATCHED, title="typing")
            await until_online(watcher)
            await _until_typing_answers(watcher, side)
            await doomed.kill()
            await asyncio.sleep(profile.outage_s)
            await doomed.start()
            back_at = time.monotonic()
            await until_online(watcher)
            await _until_typing_answers(watcher, side)
            extra["presence_back_s"] = time.monotonic() - back_at
            assert watcher.is_open, "the watcher's socket closed while presence was down"
        finally:
            await watcher.close()

    figures = await run_fault(
        presence_cluster, profile, "presence-sigkill", fault, record_figures, extra
    )
    assert figures.reconnects == 0, "a socket closed while presence was down"
