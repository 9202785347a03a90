"""Sends racing a cut-off (a removal, a suspension) through chat_service replicas: each device
sends without pause, the cut-off runs once enough sends were acknowledged, and every device goes
on until it was refused a few times after the cut-off returned. The tests then hold the store to
what the race saw: stored = acknowledged, all started before the cut-off returned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from tests.chat.support import Client

ACKS_BEFORE = 20
REFUSALS_AFTER = 3
GUARD_S = 40.0  # a hang guard for each phase, never a timing assertion


@dataclass
class Race:
    # client_msg_id -> when its send started (monotonic)
    acked: dict[str, float] = field(default_factory=dict)
    called_at: float = 0.0  # when the cut-off was called
    returned_at: float = 0.0  # when it returned (0: not yet)
    refused_after: int = 0  # refusals of sends started after it returned


async def race_sends(
    devices: Sequence[Client],
    conversation_id: str,
    cut_off: Callable[[], Awaitable[object]],
    refusal_says: str = "",
) -> Race:
    """Runs the race; every refusal must be PERMISSION_DENIED (naming `refusal_says`), and no
    send started after the cut-off returned may be acknowledged."""
    race = Race()
    enough = asyncio.Event()
    refused = [0] * len(devices)

    async def send_until_refused(i: int) -> None:
        n = 0
        while refused[i] < REFUSALS_AFTER:
            cmid = f"{devices[i].user_id}-{i}-{n}"
            n += 1
            started = time.monotonic()
            try:
                await devices[i].send(conversation_id, cmid, client_msg_id=cmid)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
                assert refusal_says in (error.details() or "")
                if race.returned_at and started > race.returned_at:
                    refused[i] += 1
                continue
            race.acked[cmid] = started
            if len(race.acked) >= ACKS_BEFORE:
                enough.set()
            assert not (race.returned_at and started > race.returned_at), (
                f"{cmid} accepted after the cut-off returned"
            )

    senders = [asyncio.create_task(send_until_refused(i)) for i in range(len(devices))]
    try:
        async with asyncio.timeout(GUARD_S):
            await enough.wait()
        race.called_at = time.monotonic()
        await cut_off()
        race.returned_at = time.monotonic()
        async with asyncio.timeout(GUARD_S):
            await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()
    race.refused_after = sum(refused)
    return race
