"""Per-user allowances on conversation creation and on members added: RESOURCE_EXHAUSTED with a
retry-after, other users unaffected, and the allowance refills with time (manual clock)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import cast

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb

from chatmesh_common.clock import ManualClock
from chatmesh_common.rpc import RETRY_AFTER_KEY

from .support import ChatHarness, rpc_error

pytestmark = pytest.mark.timeout(30)


async def test_conversation_creation_is_limited_per_user(tmp_path: Path) -> None:
    clock = ManualClock()
    harness = ChatHarness(
        tmp_path / "data", clock=clock, conversations_per_hour=60, conversation_burst=2
    )
    await harness.start()
    try:
        alice, bob = harness.client("alice"), harness.client("bob")
        await alice.group(bob)
        await alice.group(bob)
        error = await rpc_error(alice.group(bob))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "conversations created" in (error.details() or "")
        trailers = cast(Iterable[tuple[str, str]], error.trailing_metadata() or ())
        retry = [v for k, v in trailers if k == RETRY_AFTER_KEY]
        assert retry and int(retry[0]) > 0
        await bob.group(alice)  # another user's allowance is their own
        clock.advance(60)
        await alice.group(bob)
        listed = await alice.chat.ListConversations(
            pb.ListConversationsRequest(), metadata=alice.md
        )
        assert len(listed.conversations) == 4  # 2 + bob's + 1 after the refill, none refused
    finally:
        await harness.stop()


async def test_members_added_are_limited_per_user(tmp_path: Path) -> None:
    clock = ManualClock()
    harness = ChatHarness(tmp_path / "data", clock=clock, invites_per_hour=3600, invite_burst=3)
    await harness.start()
    try:
        alice = harness.client("alice")
        cid = await alice.group(harness.client("u1"), harness.client("u2"))
        request = pb.AddMembersRequest(conversation_id=cid, user_ids=["u3", "u4"])
        error = await rpc_error(alice.chat.AddMembers(request, metadata=alice.md))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "members added" in (error.details() or "")
        members = await alice.chat.ListMembers(
            pb.ListMembersRequest(conversation_id=cid), metadata=alice.md
        )
        assert {m.user_id for m in members.members} == {"alice", "u1", "u2"}
        clock.advance(2)
        await alice.chat.AddMembers(request, metadata=alice.md)
    finally:
        await harness.stop()
