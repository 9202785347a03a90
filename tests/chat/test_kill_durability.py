"""SPEC guarantee 1: `kill -9` of chat_service at any moment loses no acknowledged message.

chat_service runs as its own process (`python -m chat_service`), so SIGKILL hits it mid-write,
with sends in flight, and nothing of the test process runs in between.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.servers.services import ChatServiceProcess

from .support import SECRET, Client, seqs

pytestmark = pytest.mark.timeout(60)

SENDERS = 20
KILL_AFTER_ACKS = 150


@pytest.fixture
async def chat_process(tmp_path: Path) -> AsyncIterator[ChatServiceProcess]:
    """`python -m chat_service` on a data dir of its own; killable and restartable."""
    env = {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_DATA_DIR": str(tmp_path / "chat-data")}
    process = ChatServiceProcess(env, tmp_path / "chat_service.log")
    await process.start()
    try:
        yield process
    finally:
        await process.close()


@dataclass(frozen=True)
class Ack:
    sender: str
    client_msg_id: str
    body: str
    seq: int
    message_id: str


async def test_kill_9_loses_no_acknowledged_message(chat_process: ChatServiceProcess) -> None:
    """Every send acknowledged before SIGKILL is in history after restart, same seq/id/body."""
    users = [Client(chat_process, f"user{i:02d}") for i in range(SENDERS)]
    cid = await users[0].group(*users[1:])
    acks: list[Ack] = []
    unacknowledged: list[tuple[Client, str, str]] = []
    enough = asyncio.Event()

    async def keep_sending(sender: Client) -> None:
        n = 0
        while True:
            n += 1
            cmid = f"{sender.user_id}-{n}-{uuid.uuid4().hex[:6]}"
            body = f"{sender.user_id} says {n}"
            try:
                response = await sender.send(cid, body, client_msg_id=cmid)
            except grpc.aio.AioRpcError:
                unacknowledged.append((sender, cmid, body))
                return
            acks.append(
                Ack(sender.user_id, cmid, body, response.message.seq, response.message.message_id)
            )
            if len(acks) >= KILL_AFTER_ACKS:
                enough.set()

    senders = [asyncio.create_task(keep_sending(u)) for u in users]
    async with asyncio.timeout(20):
        await enough.wait()
    await chat_process.kill()
    async with asyncio.timeout(20):
        await asyncio.gather(*senders)
    assert unacknowledged, "no send was in flight when the process was killed"

    await chat_process.start()
    history = await users[1].all_messages(cid)
    stored = {m.seq: m for m in history}
    for ack in acks:
        message = stored.get(ack.seq)
        assert message is not None, f"acknowledged seq {ack.seq} is missing after kill -9"
        assert (message.message_id, message.sender_id, message.body, message.client_msg_id) == (
            ack.message_id,
            ack.sender,
            ack.body,
            ack.client_msg_id,
        )
    last_seq = (await users[1].conversation(cid)).conversation.last_seq
    assert seqs(history) == list(range(1, last_seq + 1))
    assert last_seq >= max(a.seq for a in acks)


async def test_sends_cut_off_by_kill_9_are_stored_once_when_retried(
    chat_process: ChatServiceProcess,
) -> None:
    """Retrying the sends a SIGKILL cut off stores each exactly once, and seqs stay gapless."""
    users = [Client(chat_process, f"user{i:02d}") for i in range(SENDERS)]
    cid = await users[0].group(*users[1:])
    cut_off: list[tuple[Client, str, str]] = []
    acked = 0
    enough = asyncio.Event()

    async def keep_sending(sender: Client) -> None:
        nonlocal acked
        for n in range(1_000):
            cmid = f"{sender.user_id}-{n}"
            try:
                await sender.send(cid, f"{sender.user_id} says {n}", client_msg_id=cmid)
            except grpc.aio.AioRpcError:
                cut_off.append((sender, cmid, f"{sender.user_id} says {n}"))
                return
            acked += 1
            if acked >= KILL_AFTER_ACKS:
                enough.set()

    senders = [asyncio.create_task(keep_sending(u)) for u in users]
    async with asyncio.timeout(20):
        await enough.wait()
    await chat_process.kill()
    async with asyncio.timeout(20):
        await asyncio.gather(*senders)
    await chat_process.start()

    retries = await asyncio.gather(
        *(sender.send(cid, body, client_msg_id=cmid) for sender, cmid, body in cut_off)
    )
    assert [(r.message.client_msg_id, r.message.body) for r in retries] == [
        (cmid, body) for _sender, cmid, body in cut_off
    ]
    history = await users[0].all_messages(cid)
    keys = [(m.sender_id, m.client_msg_id) for m in history]
    assert len(keys) == len(set(keys)), "a retried send was stored twice"
    assert seqs(history) == list(range(1, len(history) + 1))
    assert len(history) == acked + len(cut_off)
