"""LocalChannel against the real chat servicers (SQLite in a temp dir, the in-process bus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2

from chat_service.config import ChatConfig
from chat_service.server import ChatComponent
from chatmesh_common.auth import auth_metadata, issue_token
from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import SystemClock
from chatmesh_common.local_channel import EOF, LocalChannel, LocalStreamCall
from chatmesh_common.metrics import GRPC_HANDLED
from chatmesh_common.subjects import user_subject

pytestmark = pytest.mark.timeout(30)

SECRET = "local-channel-test-secret-0123456789abcdef"
SEND = "/chatmesh.chat.v1.ChatService/SendMessage"
SUBSCRIBE = "/chatmesh.events.v1.EventService/SubscribeEvents"
BOB = user_subject("bob")


def meta(user: str) -> tuple[tuple[str, str], ...]:
    return auth_metadata(issue_token(SECRET, user, "d1"))


@dataclass
class Env:
    channel: LocalChannel
    bus: InProcessBus
    stub: Any  # ChatServiceStub over the local channel
    conversation_id: str


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    config = ChatConfig(jwt_secret=SECRET, data_dir=str(tmp_path), grpc_bind="127.0.0.1:0")
    bus = InProcessBus()
    # chat_service's component alone, its servicers called through the LocalChannel only.
    component = ChatComponent(config, store=None, bus=bus, clock=SystemClock())
    channel = LocalChannel(await component.open())
    stub = chat_service_pb2_grpc.ChatServiceStub(channel)  # type: ignore[call-overload]
    created = await stub.CreateConversation(
        pb.CreateConversationRequest(
            kind=types_pb2.CONVERSATION_KIND_GROUP, title="t", member_ids=["bob"]
        ),
        metadata=meta("alice"),
    )
    try:
        yield Env(channel, bus, stub, created.conversation.conversation.conversation_id)
    finally:
        await channel.close()
        await component.close()
        await bus.close()


async def test_send_with_objects_and_with_bytes(env: Env) -> None:
    answer = await env.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=env.conversation_id, client_msg_id="m1", body="hi"),
        metadata=meta("alice"),
        timeout=5,
    )
    assert isinstance(answer, pb.SendMessageResponse)
    assert answer.message.body == "hi"

    raw = env.channel.unary_unary(SEND)
    request = pb.SendMessageRequest(
        conversation_id=env.conversation_id, client_msg_id="m2", body="there"
    )
    data = await raw(request.SerializeToString(), metadata=meta("bob"), timeout=5)
    assert isinstance(data, bytes)
    parsed = pb.SendMessageResponse.FromString(data)
    assert parsed.message.body == "there" and parsed.message.seq > answer.message.seq


async def test_refusals_are_aio_rpc_errors(env: Env) -> None:
    before = GRPC_HANDLED.labels(SEND, "PERMISSION_DENIED")._value.get()
    request = pb.SendMessageRequest(conversation_id=env.conversation_id, client_msg_id="x", body="")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await env.stub.SendMessage(
            pb.SendMessageRequest(conversation_id=env.conversation_id, client_msg_id="x", body="a"),
            metadata=meta("mallory"),
        )
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert GRPC_HANDLED.labels(SEND, "PERMISSION_DENIED")._value.get() == before + 1

    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await env.stub.SendMessage(request)
    assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert unauthenticated.value.details()


async def test_stream_reads_then_cancel_runs_the_servicers_finally(env: Env) -> None:
    subscribe = env.channel.unary_stream(
        SUBSCRIBE,
        request_serializer=event_service_pb2.SubscribeEventsRequest.SerializeToString,
        response_deserializer=None,
    )
    call = subscribe(event_service_pb2.SubscribeEventsRequest(device_id="d1"), metadata=meta("bob"))
    assert isinstance(call, LocalStreamCall)
    first = event_service_pb2.SubscribeEventsResponse.FromString(await call.read())
    assert first.WhichOneof("item") == "caught_up"
    assert env.bus._handlers.get(BOB)  # the stream follows bob's subject

    await env.stub.SendMessage(
        pb.SendMessageRequest(conversation_id=env.conversation_id, client_msg_id="s", body="yo"),
        metadata=meta("alice"),
    )
    item = event_service_pb2.SubscribeEventsResponse.FromString(await call.read())
    assert item.event.message_created.message.body == "yo" or item.event.seq > 0

    assert call.cancel()
    await call.wait_closed()
    assert not env.bus._handlers.get(BOB)  # EventStream.close() ran
    with pytest.raises(grpc.aio.AioRpcError) as cancelled:
        await call.read()
    assert cancelled.value.code() is grpc.StatusCode.CANCELLED


async def test_stream_as_objects_and_async_for(env: Env) -> None:
    subscribe = env.channel.unary_stream(
        SUBSCRIBE,
        request_serializer=event_service_pb2.SubscribeEventsRequest.SerializeToString,
        response_deserializer=event_service_pb2.SubscribeEventsResponse.FromString,
    )
    call = subscribe(event_service_pb2.SubscribeEventsRequest(), metadata=meta("bob"), timeout=0.3)
    items = []
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        async for item in call:
            items.append(item)
    assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert [i.WhichOneof("item") for i in items] == ["caught_up"]
    assert not env.bus._handlers.get(BOB)  # the deadline ended the generator


async def test_stream_unauthenticated(env: Env) -> None:
    call = env.channel.unary_stream(SUBSCRIBE)(
        event_service_pb2.SubscribeEventsRequest().SerializeToString()
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError):
        await call.read()


class _Odd:
    """A servicer that is slow, breaks, or sets trailing metadata."""

    def __init__(self) -> None:
        self.finished = asyncio.Event()

    async def Slow(self, request: bytes, context: Any) -> bytes:
        try:
            await asyncio.sleep(10)
        finally:
            self.finished.set()
        return request

    async def Broken(self, request: bytes, context: Any) -> bytes:
        raise RuntimeError("bug")

    async def Limited(self, request: bytes, context: Any) -> bytes:
        context.set_trailing_metadata((("retry-after-ms", "250"),))
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        raise AssertionError("unreachable")


def _add_odd(servicer: _Odd, server: Any) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
        for name in ("Slow", "Broken", "Limited")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Odd", handlers),))
    server.add_registered_method_handlers("t.Odd", handlers)


async def test_deadline_unknown_and_trailing_metadata() -> None:
    odd = _Odd()
    channel = LocalChannel([(_add_odd, odd)])
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await channel.unary_unary("/t.Odd/Slow")(b"x", timeout=0.05)
    assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert odd.finished.is_set()

    with pytest.raises(grpc.aio.AioRpcError) as broken:
        await channel.unary_unary("/t.Odd/Broken")(b"x")
    assert broken.value.code() is grpc.StatusCode.UNKNOWN

    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await channel.unary_unary("/t.Odd/Limited")(b"x")
    assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.value.details() == "slow down"
    assert ("retry-after-ms", "250") in list(limited.value.trailing_metadata())  # type: ignore[comparison-overlap]

    await channel.close()
    with pytest.raises(grpc.aio.UsageError):
        await channel.unary_unary("/t.Odd/Broken")(b"x")
    with pytest.raises(ValueError):
        channel.unary_unary("/t.Odd/Missing")
    assert EOF is grpc.aio.EOF  # type: ignore[attr-defined]
