"""A removal on two chat_service replicas over one CQL keyspace: once RemoveMember returns on one
replica, the removed member's sends through the other (which has just accepted them, so its
membership view knows the member) are refused; sends racing it land only before it."""

from __future__ import annotations

import asyncio

import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from tests.chat.support import Client

from .conftest import StartReplica
from .send_race import race_sends

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS = 4  # bob's devices, all on the replica that does not remove him


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
    request = pb.RemoveMemberRequest(conversation_id=cid, user_id="bob")
    race = await race_sends(
        devices, cid, lambda: alice.chat.RemoveMember(request, metadata=alice.md)
    )
    stored = [m for m in await alice.all_messages(cid) if m.sender_id == "bob"]
    assert sorted(m.client_msg_id for m in stored) == sorted(race.acked)
    assert all(started < race.returned_at for started in race.acked.values())
