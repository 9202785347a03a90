"""Sends racing a suspension on two chat_service replicas over one CQL keyspace: the messages
stored are exactly the ones acknowledged, all sent before SuspendUser returned; none after."""

from __future__ import annotations

import asyncio

import pytest
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from tests.chat.moderation_support import Moderator
from tests.chat.support import Client

from .conftest import StartReplica
from .send_race import race_sends

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS = 4  # bob's devices, alternating between the replicas


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
    request = mpb.SuspendUserRequest(user_id="bob", reason="race")
    race = await race_sends(
        devices,
        cid,
        lambda: moderator.moderation.SuspendUser(request, metadata=moderator.md),
        refusal_says="suspended",
    )
    stored = [m for m in await alice.all_messages(cid) if m.sender_id == "bob"]
    assert sorted(m.client_msg_id for m in stored) == sorted(race.acked)
    assert all(started < race.returned_at for started in race.acked.values())
    in_flight = sum(1 for started in race.acked.values() if started >= race.called_at)
    print(
        f"acked {len(race.acked)}, stored {len(stored)}, acked sends started during SuspendUser"
        f" {in_flight}, refused after it {race.refused_after}"
    )
