"""`chatmesh dev` runs the durable log's consumers in a worker process it supervises: the worker
starts with dev and indexes and pushes what dev's chat appends; killed (SIGKILL) it is started
again and no push is lost or sent twice; it ends with dev, also when dev is killed. Extra gateway
processes (CHATMESH_DEV_GATEWAYS) share dev's WebSocket port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.notify.v1 import notify_service_pb2 as notify_pb
from chatmesh.notify.v1 import notify_service_pb2_grpc
from chatmesh.search.v1 import search_service_pb2 as search_pb
from chatmesh.search.v1 import search_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_token
from tests.gateway.client import GatewayClient
from tests.servers.services import DevProcess
from tests.servers.webhook import LocalWebhookReceiver

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SECRET = "dev-worker-secret-of-at-least-thirty-two-bytes"
WEBHOOK_SECRET = "whsec-dev-worker-0123456789"
# Short, so an event the killed worker took but had not acked comes again within the test.
ACK_WAIT_S = 2.0
WAIT_S = 30.0


def _worker_pids(dev_pid: int, module: bytes = b"chatmesh_launcher.dev_consumers") -> list[int]:
    """dev's children that run `module` (the consumer worker unless told)."""
    pids = []
    for task in Path(f"/proc/{dev_pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if module in cmdline:
                pids.append(child)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _worker_pid(dev: DevProcess, not_pid: int | None = None) -> int:
    """The running worker's pid (one other than `not_pid`), waiting for it to start."""
    async with asyncio.timeout(WAIT_S):
        while True:
            pids = [p for p in _worker_pids(dev.pid) if p != not_pid and _alive(p)]
            if pids:
                return pids[0]
            await asyncio.sleep(0.05)


@asynccontextmanager
async def _dev(tmp_path: Path, **env: str) -> AsyncIterator[DevProcess]:
    dev = DevProcess(tmp_path / "data", SECRET, None, **env)
    await asyncio.to_thread(dev.start, 60)
    try:
        yield dev
    finally:
        await asyncio.to_thread(dev.stop)


def _md(user: str) -> tuple[tuple[str, str], ...]:
    return auth_metadata(issue_token(SECRET, user, "phone"))


async def _group(chat: Any, owner: str, *members: str) -> str:
    created = await chat.CreateConversation(
        chat_pb.CreateConversationRequest(
            kind=types_pb2.CONVERSATION_KIND_GROUP, title="g", member_ids=list(members)
        ),
        metadata=_md(owner),
    )
    conversation_id: str = created.conversation.conversation.conversation_id
    return conversation_id


async def _send(chat: Any, user: str, conversation_id: str, body: str) -> None:
    await chat.SendMessage(
        chat_pb.SendMessageRequest(
            conversation_id=conversation_id, client_msg_id=uuid.uuid4().hex, body=body
        ),
        metadata=_md(user),
    )


async def test_the_worker_indexes_what_dev_appends_and_ends_when_dev_is_killed(
    tmp_path: Path,
) -> None:
    """A message sent to dev is found by SearchService on dev's port (indexed by the worker);
    a SIGKILL of dev ends the worker too (its stdin pipe closes)."""
    async with _dev(tmp_path) as dev:
        worker = await _worker_pid(dev)
        async with asyncio.timeout(WAIT_S):
            # The banner names the worker once it is ready.
            while f"consumers  pid {worker}" not in dev.log_tail(100_000):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
            chat: Any = chat_service_pb2_grpc.ChatServiceStub(channel)
            search: Any = search_service_pb2_grpc.SearchServiceStub(channel)
            conversation = await _group(chat, "alice", "bob")
            await _send(chat, "alice", conversation, "aubergine parmigiana tonight")
            async with asyncio.timeout(WAIT_S):
                while True:
                    found = await search.Search(
                        search_pb.SearchRequest(query="aubergine"), metadata=_md("bob")
                    )
                    if found.hits:
                        break
                    await asyncio.sleep(0.1)
        assert [hit.conversation_id for hit in found.hits] == [conversation]
        os.kill(dev.pid, signal.SIGKILL)
        async with asyncio.timeout(WAIT_S):
            while _alive(worker):  # noqa: ASYNC110 (a process's end has no event here)
                await asyncio.sleep(0.05)


async def test_a_killed_worker_is_started_again_and_pushes_each_message_once(
    tmp_path: Path,
) -> None:
    """Pushes to an offline member: a SIGKILL of the worker right after the first ones arrived
    (some events possibly not acked yet), then more messages while it is down; the new worker
    sends every later push and none twice; dev's stop ends it."""
    env = {
        "CHATMESH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CHATMESH_NOTIFY_DEVICE_INTERVAL_S": "0",
        "CHATMESH_NOTIFY_ACK_WAIT_S": str(ACK_WAIT_S),
    }
    async with LocalWebhookReceiver(WEBHOOK_SECRET) as receiver, _dev(tmp_path, **env) as dev:

        def seqs() -> Counter[int]:
            return Counter(int(r.payload["data"]["seq"]) for r in receiver.received)

        async def until_received(count: int) -> None:
            async with asyncio.timeout(WAIT_S):
                while len(seqs()) < count:  # noqa: ASYNC110 (the receiver has no event)
                    await asyncio.sleep(0.05)

        first = await _worker_pid(dev)
        async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
            chat: Any = chat_service_pb2_grpc.ChatServiceStub(channel)
            notify: Any = notify_service_pb2_grpc.NotifyServiceStub(channel)
            await notify.RegisterDevice(
                notify_pb.RegisterDeviceRequest(
                    target=notify_pb.PushTarget(
                        platform=notify_pb.PLATFORM_WEBHOOK, token=receiver.url("/bob")
                    )
                ),
                metadata=_md("bob"),
            )
            conversation = await _group(chat, "alice", "bob")
            for i in range(5):
                await _send(chat, "alice", conversation, f"before {i}")
            await until_received(5)
            os.kill(first, signal.SIGKILL)
            for i in range(5):
                await _send(chat, "alice", conversation, f"after {i}")
            second = await _worker_pid(dev, not_pid=first)
            await until_received(10)
        # Past the ack wait: what the killed worker had not acked came again meanwhile.
        await asyncio.sleep(ACK_WAIT_S * 2)
        assert seqs() == Counter(range(1, 11))
        await asyncio.to_thread(dev.stop)
        assert not _alive(second)


def _established_on(pid: int, port: int) -> int:
    """How many of a process's sockets are established TCP connections on local `port`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


async def test_extra_gateways_share_the_websocket_port_and_deliver(tmp_path: Path) -> None:
    """With CHATMESH_DEV_GATEWAYS=1 sockets on dev's WebSocket port land in dev and in its
    gateway process, and a message reaches every member whichever process holds its socket."""
    members = [f"m{i}" for i in range(1, 16)]
    async with _dev(tmp_path, CHATMESH_DEV_GATEWAYS="1") as dev:
        async with asyncio.timeout(WAIT_S):
            while "gateways   1 more" not in dev.log_tail(100_000):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (gateway,) = _worker_pids(dev.pid, b"chatmesh_launcher.dev_gateway")
        url = f"ws://127.0.0.1:{dev.ws_port}/v1/ws"
        alice = await GatewayClient.connect(url, issue_token(SECRET, "alice", "phone"))
        others = [
            await GatewayClient.connect(url, issue_token(SECRET, m, "phone")) for m in members
        ]
        try:
            # 16 sockets over two listeners: all in one process has odds of 2 in 65,536.
            assert _established_on(dev.pid, dev.ws_port) > 0
            assert _established_on(gateway, dev.ws_port) > 0
            conversation = await alice.create_group(*members)
            await alice.call(
                "send_message", conversation_id=conversation, client_msg_id="k1", body="hello"
            )
            for client in others:
                async with asyncio.timeout(WAIT_S):
                    while True:
                        event = await client.next_event(WAIT_S)
                        if event.HasField("message_created"):
                            break
                assert event.message_created.message.body == "hello"
        finally:
            for client in (alice, *others):
                await client.close()
        await asyncio.to_thread(dev.stop)
        assert not _alive(gateway)
