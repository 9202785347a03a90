"""`chatmesh dev` keeps its durable log in the data dir: it outlives a SIGKILL and a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2

from chatmesh_common.auth import auth_metadata, issue_token
from chatmesh_common.bus import DURABLE_LOG_FILE, InProcessBus
from chatmesh_common.subjects import conversation_filter
from tests.e2e.devprocess import SECRET, DevProcess

pytestmark = pytest.mark.timeout(90)


async def _send(target: str, conversation_id: str | None, body: str) -> str:
    """Sends `body` as alice (into a new group with bob when no conversation is given)."""
    md = auth_metadata(issue_token(SECRET, "alice", "phone"))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        if conversation_id is None:
            created = await stub.CreateConversation(
                pb.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_GROUP, title="g", member_ids=["bob"]
                ),
                metadata=md,
            )
            conversation_id = created.conversation.conversation.conversation_id
        await stub.SendMessage(
            pb.SendMessageRequest(conversation_id=conversation_id, client_msg_id=body, body=body),
            metadata=md,
        )
    assert conversation_id is not None
    return conversation_id


async def test_a_consumer_reads_every_message_across_a_kill_of_dev(tmp_path: Path) -> None:
    """Messages sent before a SIGKILL and after the restart are all in the file log, and a
    consumer that acked the first ones resumes after them."""
    data_dir = tmp_path / "data"
    dev = DevProcess(data_dir)
    dev.start()
    try:
        cid = await _send(dev.grpc_target, None, "one")
        await _send(dev.grpc_target, cid, "two")
        dev.kill()
        # What the killed process had not relayed, the restarted one's first sweep relays.
        dev.start()
        await _send(dev.grpc_target, cid, "three")
        # Another process on the same file: the dev process appends, this one consumes.
        reader = InProcessBus(data_dir / DURABLE_LOG_FILE)
        consumer = await reader.durable_consumer("test", conversation_filter(cid))
        ids: list[str] = []
        async with asyncio.timeout(30):
            while f"{cid}:3" not in ids:
                for msg in await consumer.fetch(10, timeout_s=0.5):
                    ids.append(msg.msg_id)
                    await msg.ack()
        assert ids == [f"{cid}:1", f"{cid}:2", f"{cid}:3"]
        await reader.close()
        await _send(dev.grpc_target, cid, "four")
        reader = InProcessBus(data_dir / DURABLE_LOG_FILE)
        consumer = await reader.durable_consumer("test", conversation_filter(cid))
        async with asyncio.timeout(30):
            while not (msgs := await consumer.fetch(10, timeout_s=0.5)):
                pass
        assert [m.msg_id for m in msgs] == [f"{cid}:4"]
        await reader.close()
    finally:
        dev.stop()
