"""Two chat_service replicas on one keyspace: one gapless log, idempotency across both."""

from __future__ import annotations

import asyncio

import pytest

from tests.chat.support import Client, seqs

from .conftest import StartReplica

pytestmark = [pytest.mark.cql, pytest.mark.timeout(90)]

SENDERS = 40
SENDS_EACH = 5


async def test_forty_senders_over_two_replicas_share_one_gapless_log(
    migrated_env: dict[str, str], start_replica: StartReplica
) -> None:
    """40 senders split over two replicas get seqs 1..N once each; history is the same via both."""
    replicas = await asyncio.gather(start_replica(), start_replica())
    # Sender i talks to replica i % 2; the same user through the other replica is `other[i]`.
    users = [Client(replicas[i % 2], f"user{i:02d}") for i in range(SENDERS)]
    other = [Client(replicas[(i + 1) % 2], f"user{i:02d}") for i in range(SENDERS)]
    cid = await users[0].group(*users[1:])

    async def send_all(sender: Client) -> list[tuple[str, int, str, str]]:
        out = []
        for n in range(SENDS_EACH):
            cmid = f"{sender.user_id}-{n}"
            response = await sender.send(cid, f"{sender.user_id} #{n}", client_msg_id=cmid)
            assert not response.duplicate
            out.append((cmid, response.message.seq, response.message.message_id, sender.user_id))
        return out

    acks = [a for per in await asyncio.gather(*(send_all(u) for u in users)) for a in per]
    total = SENDERS * SENDS_EACH
    assert sorted(seq for _, seq, _, _ in acks) == list(range(1, total + 1))
    assert len({mid for _, _, mid, _ in acks}) == total

    via_first = await Client(replicas[0], "user00").all_messages(cid)
    via_second = await Client(replicas[1], "user01").all_messages(cid)
    assert seqs(via_first) == list(range(1, total + 1))
    assert via_first == via_second
    by_seq = {m.seq: m for m in via_first}
    for cmid, seq, message_id, sender_id in acks:
        message = by_seq[seq]
        assert (message.message_id, message.client_msg_id, message.sender_id) == (
            message_id,
            cmid,
            sender_id,
        )
    last = await users[0].conversation(cid)
    assert last.conversation.last_seq == total

    # Every sender retries its first and last send through the other replica, all at once.
    retried = [a for a in acks if a[0].endswith(("-0", f"-{SENDS_EACH - 1}"))]
    index = {u.user_id: i for i, u in enumerate(users)}
    responses = await asyncio.gather(
        *(
            other[index[sender_id]].send(cid, "a retry body is ignored", client_msg_id=cmid)
            for cmid, _, _, sender_id in retried
        )
    )
    for (cmid, seq, message_id, _), response in zip(retried, responses, strict=True):
        assert response.duplicate, f"{cmid} was stored again"
        assert (response.message.seq, response.message.message_id) == (seq, message_id)
        assert response.message.body == by_seq[seq].body
    # Nothing was appended by the retries.
    assert seqs(await users[1].all_messages(cid)) == list(range(1, total + 1))
    assert (await users[1].conversation(cid)).conversation.last_seq == total
