"""Is presence answering? A watcher's socket asks for a user's presence until it shows online.

Users of the first group of every run (scenario._create_groups) share a conversation, so each
may see the other's presence.
"""

from __future__ import annotations

import asyncio

from chatmesh.presence.v1 import presence_service_pb2 as presence_pb

from tests.gateway.client import GatewayClient, ServerError

WATCHED, WATCHER = "u0x0", "u0x1"
ONLINE_GUARD_S = 60.0


async def online(watcher: GatewayClient) -> bool:
    try:
        answer = await watcher.call("presence_subscribe", user_ids=[WATCHED], timeout_s=10)
    except (ServerError, TimeoutError):
        return False  # presence is best effort: an error while its backend is away
    presences = answer.presence_subscribe.presences
    return bool(presences) and presences[0].state == presence_pb.PRESENCE_STATE_ONLINE


async def until_online(watcher: GatewayClient) -> None:
    """Until `WATCHED` shows online to the watcher; a hang guard, not a timing assertion."""
    async with asyncio.timeout(ONLINE_GUARD_S):
        while True:
            if await online(watcher):
                return
            await asyncio.sleep(0.2)
