"""chatmesh_common.rpc: refusals become the status, message and retry-after a caller sees, over a
real gRPC server and over the LocalChannel; anything unexpected is not swallowed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from chatmesh.presence.v1 import presence_service_pb2 as pb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from chatmesh_common.auth import Identity, auth_metadata, issue_token
from chatmesh_common.grpc_server import start_grpc_server
from chatmesh_common.local_channel import LocalChannel
from chatmesh_common.rpc import (
    RETRY_AFTER_KEY,
    Authenticator,
    RpcError,
    RpcServicer,
    check_id,
    stream,
    timestamp,
    unary,
)
from tests.chat.support import SECRET, SERVICE_SECRET

pytestmark = pytest.mark.timeout(30)

ALICE = auth_metadata(issue_token(SECRET, "alice", "phone"))


class Refused(Exception):
    """A domain refusal the probe servicer maps to FAILED_PRECONDITION."""


class NarrowRefusal(Refused):
    pass


class ProbeServicer(RpcServicer, presence_service_pb2_grpc.PresenceServiceServicer):
    """Two PresenceService methods (one unary, one stream) that raise what the test asks for."""

    SERVICE = pb.DESCRIPTOR.services_by_name["PresenceService"].full_name
    ERRORS = {Refused: grpc.StatusCode.FAILED_PRECONDITION}

    def __init__(self) -> None:
        super().__init__(Authenticator.from_secrets(SECRET, SERVICE_SECRET))
        self.error: Exception | None = None
        self.stream_closed = asyncio.Event()

    @unary
    async def Connect(self, request: pb.ConnectRequest, who: Identity) -> pb.ConnectResponse:
        if self.error is not None:
            raise self.error
        return pb.ConnectResponse(presence=pb.UserPresence(user_id=who.user_id))

    @stream
    async def Watch(
        self, request: pb.WatchRequest, who: Identity
    ) -> AsyncIterator[pb.WatchResponse]:
        try:
            yield pb.WatchResponse(presence=pb.UserPresence(user_id=who.user_id))
            if self.error is not None:
                raise self.error
            await asyncio.Event().wait()
        finally:
            self.stream_closed.set()


@dataclass
class Probe:
    servicer: ProbeServicer
    stub: Any


@pytest.fixture(params=["grpc", "local"])
async def probe(request: pytest.FixtureRequest) -> AsyncIterator[Probe]:
    servicer = ProbeServicer()  # type: ignore[abstract]  # the other methods are not probed
    registrations = [(presence_service_pb2_grpc.add_PresenceServiceServicer_to_server, servicer)]
    if request.param == "local":
        local = cast(grpc.aio.Channel, LocalChannel(registrations))
        yield Probe(servicer, presence_service_pb2_grpc.PresenceServiceStub(local))
        return
    server = await start_grpc_server("127.0.0.1:0", registrations, [ProbeServicer.SERVICE])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Probe(servicer, presence_service_pb2_grpc.PresenceServiceStub(channel))
    finally:
        await channel.close(None)
        await server.stop(0)


async def connect_error(probe: Probe) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await probe.stub.Connect(pb.ConnectRequest(), metadata=ALICE)
    return caught.value


def trailing(error: grpc.aio.AioRpcError) -> dict[str, str]:
    pairs = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
    return {k: v if isinstance(v, str) else v.decode() for k, v in pairs}


async def test_the_method_gets_the_authenticated_caller(probe: Probe) -> None:
    """The wrapper verifies the token and hands the method its identity."""
    response = await probe.stub.Connect(pb.ConnectRequest(), metadata=ALICE)
    assert response.presence.user_id == "alice"


async def test_an_rpc_error_is_its_status_and_message(probe: Probe) -> None:
    """RpcError(code, message) reaches the caller as that code and message, no retry-after."""
    probe.servicer.error = RpcError(grpc.StatusCode.INVALID_ARGUMENT, "user_ids: at most 500")
    error = await connect_error(probe)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "user_ids: at most 500"
    assert RETRY_AFTER_KEY not in trailing(error)


async def test_a_retry_after_travels_as_trailing_metadata_in_milliseconds(probe: Probe) -> None:
    """retry_after_s=0.25 is `retry-after-ms: 250`, the key the gateway reads."""
    probe.servicer.error = RpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "typing: 2 per second", retry_after_s=0.25
    )
    error = await connect_error(probe)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "typing: 2 per second"
    assert trailing(error)[RETRY_AFTER_KEY] == "250"


def test_a_retry_after_is_rounded_up_to_a_whole_millisecond() -> None:
    """Never 0 ms for a positive wait: a client retrying at once would be refused again."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert RpcError(code, "x", retry_after_s=0.0001).trailing_metadata() == (
        (RETRY_AFTER_KEY, "1"),
    )
    assert RpcError(code, "x", retry_after_s=0.0501).trailing_metadata() == (
        (RETRY_AFTER_KEY, "51"),
    )
    assert RpcError(code, "x").trailing_metadata() == ()


async def test_a_listed_domain_error_maps_to_its_status_along_its_classes(probe: Probe) -> None:
    """An exception whose class (or a base) is in ERRORS gets that status and its message."""
    probe.servicer.error = NarrowRefusal("conversation c1 is archived")
    error = await connect_error(probe)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "conversation c1 is archived"


async def test_an_unexpected_error_is_not_swallowed(probe: Probe) -> None:
    """Anything else propagates: the caller sees UNKNOWN, never a success or a made-up code."""
    probe.servicer.error = ZeroDivisionError("a bug")
    error = await connect_error(probe)
    assert error.code() is grpc.StatusCode.UNKNOWN


async def test_a_stream_delivers_its_items_then_the_refusal(probe: Probe) -> None:
    """An RpcError raised mid-stream ends it with that status after the items before it."""
    probe.servicer.error = RpcError(grpc.StatusCode.PERMISSION_DENIED, "blocked", retry_after_s=1)
    call = probe.stub.Watch(pb.WatchRequest(), metadata=ALICE)
    first = await call.read()
    assert first.presence.user_id == "alice"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "blocked"
    assert trailing(caught.value)[RETRY_AFTER_KEY] == "1000"


async def test_a_cancelled_stream_closes_the_method_generator(probe: Probe) -> None:
    """Cancelling the call runs the method's `finally` (streams release their subscriptions)."""
    call = probe.stub.Watch(pb.WatchRequest(), metadata=ALICE)
    await call.read()
    call.cancel()
    await asyncio.wait_for(probe.servicer.stream_closed.wait(), 5)


async def test_a_stream_refuses_a_caller_before_the_first_item(probe: Probe) -> None:
    """Authentication happens before the method runs: no item, UNAUTHENTICATED."""
    call = probe.stub.Watch(pb.WatchRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert not probe.servicer.stream_closed.is_set()


def test_an_rpc_missing_from_the_credential_table_is_served_to_nobody() -> None:
    """Fail closed: a method nobody classified answers INTERNAL, whatever the credential."""
    authenticator = Authenticator.from_secrets(SECRET, SERVICE_SECRET)
    with pytest.raises(RpcError) as caught:
        authenticator.authenticate(ALICE, "chatmesh.nothing.v1.NoService", "Anything")
    assert caught.value.code is grpc.StatusCode.INTERNAL
    assert "credential table" in caught.value.message


def test_check_id_names_the_field_and_the_rule() -> None:
    """Empty and over-long ids are INVALID_ARGUMENT with the field and the limit named."""
    with pytest.raises(RpcError, match="conversation_id is required"):
        check_id("conversation_id", "")
    with pytest.raises(RpcError, match="user_ids must be at most 128 characters"):
        check_id("user_ids", "x" * 129)
    check_id("user_ids", "x" * 128)


def test_timestamp_keeps_sub_second_precision() -> None:
    """Whole seconds and nanos, also before the epoch and for current clock readings."""
    assert (timestamp(1.5).seconds, timestamp(1.5).nanos) == (1, 500_000_000)
    assert (timestamp(-0.25).seconds, timestamp(-0.25).nanos) == (-1, 750_000_000)
    now = timestamp(1_700_000_000.123456)
    assert now.seconds == 1_700_000_000
    assert abs(now.nanos - 123_456_000) < 1_000
    assert 0 <= timestamp(1.9999999999).nanos <= 999_999_999
