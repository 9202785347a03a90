"""Every ChatService RPC under random and extreme requests against a live chat_service: each
answer is OK or a clear refusal (a status naming the rule, never UNKNOWN or INTERNAL), the service
keeps serving, and a refused request changes nothing stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from google.protobuf import symbol_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chat.support import ChatHarness

from . import tally
from .strategies import FUZZ_EXAMPLES, KNOWN_IDS, messages

pytestmark = pytest.mark.timeout(600)

SERVICE = pb.DESCRIPTOR.services_by_name["ChatService"]
CLEAR_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}


@dataclass
class LiveChat:
    target: str
    conversation_id: str
    metadata: tuple[tuple[str, str], ...]
    channel: grpc.Channel

    def call(self, method: str, request: Any) -> Any:
        output = symbol_database.Default().GetSymbol(
            SERVICE.methods_by_name[method].output_type.full_name
        )
        stub = self.channel.unary_unary(
            f"/{SERVICE.full_name}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=output.FromString,
        )
        return stub(request, metadata=self.metadata, timeout=10)

    def snapshot(self) -> tuple[bytes, bytes]:
        """What alice can see: her conversations and the seeded conversation's history (or why
        not: an accepted leave or removal earlier may have taken her out of it)."""
        listed = self.call(
            "ListConversations", pb.ListConversationsRequest(page_size=200, include_archived=True)
        )
        for view in listed.conversations:
            view.ClearField("unread_count")  # reads move markers; not a stored change
        try:
            history = self.call(
                "GetHistory", pb.GetHistoryRequest(conversation_id=self.conversation_id, limit=200)
            ).SerializeToString(deterministic=True)
        except grpc.RpcError as error:
            history = str(error.code()).encode()  # type: ignore[attr-defined]
        return listed.SerializeToString(deterministic=True), history


@pytest.fixture(scope="module")
def live_chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveChat]:
    """chat_service on its own loop in a thread; the test calls it with a blocking channel."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    harness = ChatHarness(tmp_path_factory.mktemp("fuzz") / "data")

    async def seed() -> str:
        await harness.start()
        alice, bob = harness.client("alice"), harness.client("bob")
        cid = await alice.group(bob)
        await alice.send(cid, "seed")
        return cid

    cid = asyncio.run_coroutine_threadsafe(seed(), loop).result(30)
    channel = grpc.insecure_channel(harness.target)
    alice = harness.client("alice")
    try:
        yield LiveChat(harness.target, cid, tuple(alice.md), channel)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(harness.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _requests(cid: str) -> st.SearchStrategy[tuple[str, Any]]:
    known = {
        "conversation_id": [cid, "no-such-conversation"],
        "user_id": KNOWN_IDS,
        "user_ids": KNOWN_IDS,
        "member_ids": KNOWN_IDS,
    }

    def for_method(name: str) -> st.SearchStrategy[tuple[str, Any]]:
        method = SERVICE.methods_by_name[name]
        cls = symbol_database.Default().GetSymbol(method.input_type.full_name)
        return messages(method.input_type, cls, known=known).map(lambda r: (name, r))

    names = [m.name for m in SERVICE.methods if not m.server_streaming]
    return st.sampled_from(names).flatmap(for_method)


def test_every_rpc_answers_random_requests_clearly(live_chat: LiveChat) -> None:
    seen: set[tuple[str, str]] = set()

    @settings(
        max_examples=FUZZ_EXAMPLES * 2,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_requests(live_chat.conversation_id))
    def check(case: tuple[str, Any]) -> None:
        method, request = case
        before = live_chat.snapshot()
        tally.example("chat RPCs")
        try:
            live_chat.call(method, request)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            assert code in CLEAR_REFUSALS, f"{method}: {code.name} {error.details()}"  # type: ignore[attr-defined]
            assert error.details(), f"{method}: {code.name} without a message"  # type: ignore[attr-defined]
            assert live_chat.snapshot() == before, f"refused {method} changed what is stored"
            seen.add((method, code.name))
            tally.refusal("chat RPCs", f"{method} {code.name}")

    check()
    # The service still serves after all of it.
    live_chat.snapshot()
    print(f"distinct (method, refusal) pairs: {len(seen)}")
