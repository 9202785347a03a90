"""Every service serves gRPC health checking and server reflection (SPEC "Surfaces")."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from .support import ChatHarness

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("service", ["", "chatmesh.chat.v1.ChatService"])
async def test_health_check_is_serving(chat_server: ChatHarness, service: str) -> None:
    """Health Check answers SERVING for the server as a whole and for ChatService."""
    stub = health_pb2_grpc.HealthStub(chat_server.channel)
    async with asyncio.timeout(5):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(chat_server: ChatHarness) -> None:
    """Server reflection lists the chat, event, health and reflection services."""
    stub = reflection_pb2_grpc.ServerReflectionStub(chat_server.channel)
    async with asyncio.timeout(5):
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        responses = [r async for r in call]
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {
        "chatmesh.chat.v1.ChatService",
        "chatmesh.events.v1.EventService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_reflection_describes_chat_service_without_proto_files(
    chat_server: ChatHarness,
) -> None:
    """Reflection returns the file descriptor of ChatService, as grpcurl needs."""
    stub = reflection_pb2_grpc.ServerReflectionStub(chat_server.channel)
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="chatmesh.chat.v1.ChatService"
    )
    async with asyncio.timeout(5):
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    [response] = responses
    assert response.file_descriptor_response.file_descriptor_proto
