"""A removal on two chat_service replicas over one CQL keyspace: once RemoveMember returns on one
replica, the removed member's sends through the other (which has just accepted them, so its
membership view knows the member) are refused; sends racing it land only before it."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from tests.chat.support import Client

from .conftest import StartReplica

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS = 4  # bob's devices, all on the replica that does not remove him
ACKS_BEFORE = 20


async def test_a_removal_on_one_replica_binds_at_once_on_the_other(
    migrated_env: dict[str, str], start_replica: StartReplica
) -> None:
    """bob sends without pause through replica 1 while alice removes him through replica 0:
    every stored message of bob's was acknowledged, none was sent after RemoveMember
    returned, and every send after it is PERMISSION_DENIED."""
    replicas = await asyncio.gather(start_replica(), start_replica())
    alice = Client(replicas[0], "alice")
    devices = [Client(replicas[1], "bob", f"device{i}") for i in range(SENDERS)]
    cid = await alice.group(devices[0])
    acked: dict[str, float] = {}  # client_msg_id -> when its send started (monotonic)
    refused_after = [0] * SENDERS
    returned: list[float] = []  # when RemoveMember returned
    enough = asyncio.Event()

    async def send_until_refused(i: int) -> None:
        n = 0
        while refused_after[i] < 3:
            cmid = f"bob-{i}-{n}"
            n += 1
            started = time.monotonic()
            try:
                await devices[i].send(cid, cmid, client_msg_id=cmid)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
                if returned and started > returned[0]:
                    refused_after[i] += 1
                continue
            acked[cmid] = started
            if len(acked) >= ACKS_BEFORE:
                enough.set()
            assert not (returned and started > returned[0]), f"{cmid} accepted after removal"

    senders = [asyncio.create_task(send_until_refused(i)) for i in range(SENDERS)]
    try:
        async with asyncio.timeout(40):
            await enough.wait()
        await alice.chat.RemoveMember(
            pb.RemoveMemberRequest(conversation_id=cid, user_id="bob"), metadata=alice.md
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
