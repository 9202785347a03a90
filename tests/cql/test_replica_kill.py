"""SIGKILL of one of two replicas mid-load: no acknowledged message is lost, seqs stay gapless."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import grpc
import pytest

from tests.chat.support import Client, seqs

from .conftest import StartReplica

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS_PER_REPLICA = 10
KILL_AFTER_ACKS = 150
ACKS_AFTER_KILL = 100


@dataclass(frozen=True)
class Ack:
    sender: str
    client_msg_id: str
    body: str
    seq: int
    message_id: str


async def test_kill_9_of_a_replica_loses_no_acknowledged_message(
    migrated_env: dict[str, str], start_replica: StartReplica
) -> None:
    """Acked sends through both replicas survive SIGKILL of one; retries of cut-off sends too."""
    doomed, survivor = await asyncio.gather(start_replica(), start_replica())
    users = [
        Client(doomed if i < SENDERS_PER_REPLICA else survivor, f"user{i:02d}")
        for i in range(2 * SENDERS_PER_REPLICA)
    ]
    cid = await users[0].group(*users[1:])
    acks: list[Ack] = []
    cut_off: list[tuple[str, str, str]] = []
    killed = False
    acks_at_kill = 0
    enough = asyncio.Event()
    done = asyncio.Event()

    async def keep_sending(sender: Client) -> None:
        n = 0
        while not done.is_set():
            n += 1
            cmid = f"{sender.user_id}-{n}-{uuid.uuid4().hex[:6]}"
            body = f"{sender.user_id} says {n}"
            try:
                response = await sender.send(cid, body, client_msg_id=cmid)
            except grpc.aio.AioRpcError:
                cut_off.append((sender.user_id, cmid, body))
                return
            message = response.message
            acks.append(Ack(sender.user_id, cmid, body, message.seq, message.message_id))
            if len(acks) >= KILL_AFTER_ACKS:
                enough.set()
            if killed and len(acks) >= acks_at_kill + ACKS_AFTER_KILL:
                done.set()

    senders = [asyncio.create_task(keep_sending(u)) for u in users]
    async with asyncio.timeout(30):
        await enough.wait()
    await doomed.kill()
    killed, acks_at_kill = True, len(acks)
    async with asyncio.timeout(30):
        await asyncio.gather(*senders)
    assert cut_off, "no send was in flight on the killed replica"
    assert all(sender < f"user{SENDERS_PER_REPLICA:02d}" for sender, _, _ in cut_off)
    assert len(acks) >= acks_at_kill + ACKS_AFTER_KILL

    reader = Client(survivor, "user19")
    history = await reader.all_messages(cid)
    stored = {m.seq: m for m in history}
    for ack in acks:
        message = stored.get(ack.seq)
        assert message is not None, f"acknowledged seq {ack.seq} is missing"
        assert (message.message_id, message.sender_id, message.body, message.client_msg_id) == (
            ack.message_id,
            ack.sender,
            ack.body,
            ack.client_msg_id,
        )
    last_seq = (await reader.conversation(cid)).conversation.last_seq
    assert seqs(history) == list(range(1, last_seq + 1))
    assert len({m.message_id for m in history}) == len(history)

    # The cut-off sends, retried through the survivor, are stored exactly once.
    retries = await asyncio.gather(
        *(Client(survivor, s).send(cid, body, client_msg_id=cmid) for s, cmid, body in cut_off)
    )
    assert [(r.message.client_msg_id, r.message.body) for r in retries] == [
        (cmid, body) for _, cmid, body in cut_off
    ]
    history = await reader.all_messages(cid)
    keys = [(m.sender_id, m.client_msg_id) for m in history]
    assert len(keys) == len(set(keys)), "a retried send was stored twice"
    assert seqs(history) == list(range(1, len(history) + 1))
    assert len(history) == len(acks) + len(cut_off)
