"""Sends racing a suspension on two chat_service replicas over one CQL keyspace: the messages
stored are exactly the ones acknowledged, all sent before SuspendUser returned; none after."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from tests.chat.moderation_support import Moderator
from tests.chat.support import Client

from .conftest import StartReplica

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS = 4  # bob's devices, alternating between the replicas
ACKS_BEFORE = 20
REFUSALS_AFTER = 3


async def test_sends_racing_a_suspension_over_two_replicas_land_only_before_it(
    migrated_env: dict[str, str], start_replica: StartReplica
) -> None:
    """bob sends without pause from both replicas while a moderator suspends him through one:
    every stored message of bob's was acknowledged and sent before SuspendUser returned, every
    acknowledged one is stored, and every send after it is PERMISSION_DENIED (suspended)."""
    replicas = await asyncio.gather(start_replica(), start_replica())
    alice = Client(replicas[0], "alice")
    devices = [Client(replicas[i % 2], "bob", f"device{i}") for i in range(SENDERS)]
    moderator = Moderator(replicas[1])
    cid = await alice.group(devices[0])
    acked: dict[str, float] = {}  # client_msg_id -> when its send started (monotonic)
    refused_after = [0] * SENDERS
    returned: list[float] = []  # when SuspendUser returned
    enough = asyncio.Event()  # ACKS_BEFORE sends were acknowledged

    async def send_until_refused(i: int) -> None:
        n = 0
        while refused_after[i] < REFUSALS_AFTER:
            cmid = f"bob-{i}-{n}"
            n += 1
            started = time.monotonic()
            try:
                await devices[i].send(cid, cmid, client_msg_id=cmid)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
                assert "suspended" in (error.details() or "")
                if returned and started > returned[0]:
                    refused_after[i] += 1
                continue
            acked[cmid] = started
            if len(acked) >= ACKS_BEFORE:
                enough.set()
            assert not (returned and started > returned[0]), f"{cmid} accepted after SuspendUser"

    senders = [asyncio.create_task(send_until_refused(i)) for i in range(SENDERS)]
    try:
        async with asyncio.timeout(40):
            await enough.wait()
        called = time.monotonic()
        await moderator.moderation.SuspendUser(
            mpb.SuspendUserRequest(user_id="bob", reason="race"), metadata=moderator.md
        )
        returned.append(time.monotonic())
        async with asyncio.timeout(40):
            await asyncio.gather(*senders)
    finally:
        for task in senders:
            task.cancel()
    stored = [m for m in await alice.all_messages(cid) if m.sender_id == "bob"]
    assert sorted(m.client_msg_id for m in stored) == sorted(acked)
    assert all(started < returned[0] for started in acked.values())
    in_flight = sum(1 for started in acked.values() if started >= called)
    print(
        f"acked {len(acked)}, stored {len(stored)}, acked sends started during SuspendUser"
        f" {in_flight}, refused after it {sum(refused_after)}"
    )
