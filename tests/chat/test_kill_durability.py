"""SPEC guarantee 1: `kill -9` of chat_service at any moment loses no acknowledged message.

chat_service runs as its own process (`python -m chat_service`), so SIGKILL hits it mid-write,
with sends in flight, and nothing of the test process runs in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .support import SECRET, Client, free_port, seqs

pytestmark = pytest.mark.timeout(60)

SENDERS = 20
KILL_AFTER_ACKS = 150


class ChatProcess:
    """`python -m chat_service` on a free port; killable, restartable on the same data dir."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        assert self._channel is not None, "chat_service is not running"
        return self._channel

    async def start(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
        port = free_port()
        env = {
            **os.environ,
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_DATA_DIR": str(self.data_dir),
            "CHATMESH_GRPC_BIND": f"127.0.0.1:{port}",
            "CHATMESH_METRICS_PORT": "-1",
            "CHATMESH_LOG_LEVEL": "WARNING",
        }
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chat_service",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await self._wait_serving()

    async def _wait_serving(self, wait_s: float = 20.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        async with asyncio.timeout(wait_s):
            while True:
                assert self.process is not None
                if self.process.returncode is not None:
                    pytest.fail(
                        f"chat_service exited with {self.process.returncode}:\n"
                        + self.log_path.read_text(errors="replace")
                    )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    response = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no graceful anything.

        The channel stays open, so calls in flight fail as the server vanishes (UNAVAILABLE)
        rather than being cancelled by the client; start() replaces it.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


@pytest.fixture
async def chat_process(tmp_path: Path) -> AsyncIterator[ChatProcess]:
    process = ChatProcess(tmp_path / "chat-data", tmp_path / "chat_service.log")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@dataclass(frozen=True)
class Ack:
    sender: str
    client_msg_id: str
    body: str
    seq: int
    message_id: str


async def test_kill_9_loses_no_acknowledged_message(chat_process: ChatProcess) -> None:
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
    chat_process: ChatProcess,
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
