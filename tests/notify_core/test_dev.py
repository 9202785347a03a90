"""`chatmesh dev` runs notify_service on the shared log: NotifyService answers on dev's gRPC port
and a message to an offline member reaches the delivery loop (with provider not configured in
dev, the push ends as a dead letter naming that)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as chat_pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.notify.v1 import notify_service_pb2 as pb
from chatmesh.notify.v1 import notify_service_pb2_grpc

from chatmesh_common.auth import auth_metadata, issue_service_token, issue_token
from chatmesh_common.credentials import SCOPE_NOTIFY_ADMIN
from tests.servers.services import DevProcess

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

SECRET = "notify-dev-secret-of-at-least-thirty-two-bytes"


@pytest.mark.parametrize("consumers", ["process", "inline"])
async def test_dev_serves_notify_and_consumes_the_log(tmp_path: Path, consumers: str) -> None:
    """A device registered over dev's gRPC gets its push handled: dead-lettered, no provider;
    with the consumers in dev's worker process and on dev's own event loop."""
    dev = DevProcess(tmp_path / "data", SECRET, None, CHATMESH_DEV_CONSUMERS=consumers)
    await asyncio.to_thread(dev.start)
    try:
        service_secret = (tmp_path / "data" / "service-secret").read_text().strip()
        alice = auth_metadata(issue_token(SECRET, "alice", "phone"))
        bob = auth_metadata(issue_token(SECRET, "bob", "phone"))
        admin = auth_metadata(issue_service_token(service_secret, "ops", [SCOPE_NOTIFY_ADMIN]))
        async with grpc.aio.insecure_channel(dev.grpc_target) as channel:
            notify: Any = notify_service_pb2_grpc.NotifyServiceStub(channel)
            chat: Any = chat_service_pb2_grpc.ChatServiceStub(channel)
            await notify.RegisterDevice(
                pb.RegisterDeviceRequest(
                    target=pb.PushTarget(platform=pb.PLATFORM_APNS, token="abcd")
                ),
                metadata=bob,
            )
            created = await chat.CreateConversation(
                chat_pb.CreateConversationRequest(
                    kind=types_pb2.CONVERSATION_KIND_DIRECT, member_ids=["bob"]
                ),
                metadata=alice,
            )
            conversation = created.conversation.conversation.conversation_id
            await chat.SendMessage(
                chat_pb.SendMessageRequest(
                    conversation_id=conversation, client_msg_id=uuid.uuid4().hex, body="hi"
                ),
                metadata=alice,
            )
            async with asyncio.timeout(20):
                while True:
                    listed = await notify.ListDeadLetters(
                        pb.ListDeadLettersRequest(), metadata=admin
                    )
                    if listed.dead_letters:
                        break
                    await asyncio.sleep(0.1)
            (dead,) = listed.dead_letters
            assert (dead.user_id, dead.conversation_id, dead.seq) == ("bob", conversation, 1)
            assert dead.last_error == "provider not configured"
    finally:
        await asyncio.to_thread(dev.stop)


async def test_serve_notify_answers_with_health_and_reflection(tmp_path: Path) -> None:
    """`chatmesh serve notify` starts on its own settings and answers NotifyService calls."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from tests.servers.services import ServiceProcess, _grpc_env, _grpc_ready

    env = {
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": "notify-serve-service-secret",
        "CHATMESH_NOTIFY_DB": str(tmp_path / "notify.db"),
    }
    process = ServiceProcess("notify", env, tmp_path / "notify.log", None, _grpc_env, _grpc_ready)
    await process.start()
    try:
        async with grpc.aio.insecure_channel(process.target) as channel:
            notify: Any = notify_service_pb2_grpc.NotifyServiceStub(channel)
            bob = auth_metadata(issue_token(SECRET, "bob", "phone"))
            listed = await notify.ListDevices(pb.ListDevicesRequest(), metadata=bob)
            assert list(listed.devices) == []
            reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = [s.name async for r in responses for s in r.list_services_response.service]
            assert "chatmesh.notify.v1.NotifyService" in names
    finally:
        await process.stop()
