"""`chatmesh dev` killed with SIGKILL loses no acknowledged message."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import grpc
import websockets
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2

from chatmesh_common.auth import auth_metadata, issue_token

from .devprocess import SECRET, DevProcess


async def _history(target: str, token: str, conversation_id: str) -> list[types_pb2.Message]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_service_pb2_grpc.ChatServiceStub(channel)
        messages: list[types_pb2.Message] = []
        before = 0
        while True:
            page = await stub.GetHistory(
                pb.GetHistoryRequest(conversation_id=conversation_id, before_seq=before, limit=200),
                metadata=auth_metadata(token),
            )
            messages.extend(page.messages)
            if not page.has_more:
                return sorted(messages, key=lambda m: m.seq)
            before = page.messages[-1].seq


async def test_sigkill_after_acks_loses_nothing(tmp_path: Path) -> None:
    """Every send acknowledged over the WebSocket before a SIGKILL is in history after restart."""
    dev = DevProcess(tmp_path / "data")
    dev.start()
    token = issue_token(SECRET, "alice", "phone")
    acked: dict[str, tuple[int, str]] = {}
    try:
        async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
            stub = chat_service_pb2_grpc.ChatServiceStub(channel)
            created = await stub.CreateConversation(
                pb.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_GROUP, title="g", member_ids=["bob"]
                ),
                metadata=auth_metadata(token),
            )
        cid = created.conversation.conversation.conversation_id

        async with websockets.connect(
            dev.ws_url,
            subprotocols=[
                websockets.Subprotocol("chatmesh.v1"),
                websockets.Subprotocol(f"bearer.{token}"),
            ],
        ) as ws:
            ready = json.loads(await ws.recv())
            assert "ready" in ready
            # Stay under the per-user send rate (burst 40): 30 sends, all in flight at once.
            for i in range(30):
                await ws.send(
                    json.dumps(
                        {
                            "requestId": f"r{i}",
                            "sendMessage": {
                                "conversationId": cid,
                                "clientMsgId": f"m{i}",
                                "body": f"b{i}",
                            },
                        }
                    )
                )
            async with asyncio.timeout(20):
                while len(acked) < 30:
                    frame = json.loads(await ws.recv())
                    if "sendMessage" in frame:
                        message = frame["sendMessage"]["message"]
                        acked[message["body"]] = (int(message["seq"]), message["messageId"])
        dev.kill()
    finally:
        with contextlib.suppress(Exception):
            dev.kill()

    dev.start()
    try:
        stored = await _history(dev.grpc_target, token, cid)
    finally:
        dev.stop()
    by_body = {m.body: (m.seq, m.message_id) for m in stored}
    for body, ack in acked.items():
        assert by_body.get(body) == ack
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
