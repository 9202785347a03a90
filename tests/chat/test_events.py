"""The event sink's table: every event kind has a route, and the durable log gets exactly the
kinds the table marks durable, through the bus's durable-consumer API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.events.v1 import events_pb2

from chat_service.events import ROUTES, Durable
from chatmesh_common.subjects import conversation_filter

from .support import ChatHarness, Client


def test_every_event_kind_has_a_route() -> None:
    """A new payload kind cannot be added without saying where it goes."""
    payload = events_pb2.ConversationEvent.DESCRIPTOR.oneofs_by_name["payload"]
    assert set(ROUTES) == {field.name for field in payload.fields}


def test_only_durable_routes_name_a_durable_subject_kind() -> None:
    """Live-only kinds have no durable subject; durable ones all have one."""
    for name, route in ROUTES.items():
        assert (route.kind is None) == (route.durable is Durable.LIVE), name


async def test_the_durable_log_gets_log_events_and_receipts_only(
    chat_server: ChatHarness, client: Callable[[str], Client]
) -> None:
    """Creation and title changes stay live; messages, edits, membership and receipts are
    durable, each once, with `<conversation>:<seq>` ids for log events."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    await alice.chat.UpdateConversation(
        pb.UpdateConversationRequest(conversation_id=cid, title="renamed"), metadata=alice.md
    )
    await alice.send(cid, "hello")
    await alice.chat.EditMessage(
        pb.EditMessageRequest(conversation_id=cid, message_seq=1, body="hello!"),
        metadata=alice.md,
    )
    await bob.chat.MarkRead(pb.MarkReadRequest(conversation_id=cid, seq=1), metadata=bob.md)
    await alice.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id="bob"), metadata=alice.md
    )
    assert chat_server.server is not None
    consumer = await chat_server.server.parts.bus.durable_consumer("test", conversation_filter(cid))
    kinds: dict[str, str] = {}
    async with asyncio.timeout(10):
        # The relay and the receipt publisher run apart: wait for all four, in any order.
        while len(kinds) < 4:
            for msg in await consumer.fetch(10, timeout_s=1.0):
                kind = msg.subject.rsplit(".", 1)[1]
                assert kind not in kinds, f"{kind} came twice"
                kinds[kind] = msg.msg_id
                await msg.ack()
    assert kinds == {
        "created": f"{cid}:1",
        "edited": f"{cid}:2",
        "receipt": f"{cid}:r:bob:1:1",
        "membership": f"{cid}:3",
    }
    await consumer.close()
