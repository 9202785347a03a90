"""SPEC "roles": owner, admins and members of groups; channels where only owner and admins post."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import types_pb2

from .support import Client, expect_code

pytestmark = pytest.mark.timeout(20)

DENIED = grpc.StatusCode.PERMISSION_DENIED
OWNER, ADMIN, MEMBER = types_pb2.ROLE_OWNER, types_pb2.ROLE_ADMIN, types_pb2.ROLE_MEMBER


async def remove(actor: Client, cid: str, target: Client) -> pb.RemoveMemberResponse:
    response: pb.RemoveMemberResponse = await actor.chat.RemoveMember(
        pb.RemoveMemberRequest(conversation_id=cid, user_id=target.user_id), metadata=actor.md
    )
    return response


async def set_role(
    actor: Client, cid: str, target: Client, role: types_pb2.Role
) -> pb.SetMemberRoleResponse:
    response: pb.SetMemberRoleResponse = await actor.chat.SetMemberRole(
        pb.SetMemberRoleRequest(conversation_id=cid, user_id=target.user_id, role=role),
        metadata=actor.md,
    )
    return response


async def leave(actor: Client, cid: str) -> pb.LeaveConversationResponse:
    response: pb.LeaveConversationResponse = await actor.chat.LeaveConversation(
        pb.LeaveConversationRequest(conversation_id=cid), metadata=actor.md
    )
    return response


async def test_creator_owns_the_group(client: Callable[[str], Client]) -> None:
    """The creator of a group is its owner; the others are members."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    assert await bob.members(cid) == {"alice": OWNER, "bob": MEMBER}
    assert (await alice.conversation(cid)).role == OWNER


async def test_owner_adds_an_admin(client: Callable[[str], Client]) -> None:
    """The owner can add a user straight in as admin."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group()
    added = await alice.add(cid, bob, role=ADMIN)
    assert [(m.user_id, m.role) for m in added.added] == [("bob", ADMIN)]
    assert added.last_seq == 1
    assert (await alice.members(cid))["bob"] == ADMIN


async def test_admin_cannot_add_an_admin(client: Callable[[str], Client]) -> None:
    """An admin adding someone as admin is refused, and nobody is added."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group()
    await alice.add(cid, bob, role=ADMIN)
    await expect_code(DENIED, bob.add(cid, carol, role=ADMIN))
    assert "carol" not in await alice.members(cid)


async def test_admin_adds_and_removes_members(client: Callable[[str], Client]) -> None:
    """An admin adds members and removes members."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group()
    await alice.add(cid, bob, role=ADMIN)
    await bob.add(cid, carol)
    assert (await alice.members(cid))["carol"] == MEMBER
    await remove(bob, cid, carol)
    assert "carol" not in await alice.members(cid)


async def test_member_cannot_add(client: Callable[[str], Client]) -> None:
    """A plain member cannot add anyone."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob)
    await expect_code(DENIED, bob.add(cid, carol))
    assert set(await alice.members(cid)) == {"alice", "bob"}


async def test_member_cannot_remove(client: Callable[[str], Client]) -> None:
    """A plain member cannot remove another member."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    await expect_code(DENIED, remove(bob, cid, carol))
    assert set(await alice.members(cid)) == {"alice", "bob", "carol"}


async def test_admin_cannot_remove_an_admin(client: Callable[[str], Client]) -> None:
    """An admin removing another admin is refused."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group()
    await alice.add(cid, bob, carol, role=ADMIN)
    await expect_code(DENIED, remove(bob, cid, carol))
    assert (await alice.members(cid))["carol"] == ADMIN


async def test_owner_removes_an_admin(client: Callable[[str], Client]) -> None:
    """The owner can remove an admin."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group()
    await alice.add(cid, bob, role=ADMIN)
    removed = await remove(alice, cid, bob)
    assert removed.seq == 2
    assert set(await alice.members(cid)) == {"alice"}


async def test_nobody_removes_the_owner(client: Callable[[str], Client]) -> None:
    """An admin cannot remove the owner."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group()
    await alice.add(cid, bob, role=ADMIN)
    await expect_code(DENIED, remove(bob, cid, alice))
    assert (await bob.members(cid))["alice"] == OWNER


async def test_only_the_owner_changes_roles(client: Callable[[str], Client]) -> None:
    """An admin cannot promote a member to admin."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(carol)
    await alice.add(cid, bob, role=ADMIN)
    await expect_code(DENIED, set_role(bob, cid, carol, ADMIN))
    assert (await alice.members(cid))["carol"] == MEMBER


async def test_owner_promotes_and_demotes(client: Callable[[str], Client]) -> None:
    """The owner promotes a member to admin and demotes it back, each change taking a seq."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    promoted = await set_role(alice, cid, bob, ADMIN)
    assert (promoted.member.role, promoted.seq) == (ADMIN, 1)
    demoted = await set_role(alice, cid, bob, MEMBER)
    assert (demoted.member.role, demoted.seq) == (MEMBER, 2)


async def test_owner_hands_over_ownership(client: Callable[[str], Client]) -> None:
    """Giving another member ROLE_OWNER makes it the one owner; the old owner becomes admin."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob, carol)
    handed = await set_role(alice, cid, bob, OWNER)
    assert handed.member.role == OWNER
    assert await carol.members(cid) == {"alice": ADMIN, "bob": OWNER, "carol": MEMBER}
    await expect_code(DENIED, set_role(alice, cid, carol, ADMIN))
    await set_role(bob, cid, carol, ADMIN)
    assert (await bob.members(cid))["carol"] == ADMIN


async def test_owner_leaving_hands_ownership_to_longest_serving_admin(
    client: Callable[[str], Client],
) -> None:
    """When the owner leaves, the admin who joined first becomes owner."""
    alice, bob, carol, dave = client("alice"), client("bob"), client("carol"), client("dave")
    cid = await alice.group(carol)
    await alice.add(cid, bob, role=ADMIN)
    await set_role(alice, cid, carol, ADMIN)
    await alice.add(cid, dave)
    await leave(alice, cid)
    assert await dave.members(cid) == {"bob": ADMIN, "carol": OWNER, "dave": MEMBER}


async def test_owner_leaving_without_admins_hands_ownership_to_longest_member(
    client: Callable[[str], Client],
) -> None:
    """With no admin, the member who joined first (not the first by name) becomes owner."""
    alice, zara, adam = client("alice"), client("zara"), client("adam")
    cid = await alice.group(zara)
    await alice.add(cid, adam)
    await leave(alice, cid)
    assert await adam.members(cid) == {"adam": MEMBER, "zara": OWNER}


async def test_member_leaves(client: Callable[[str], Client]) -> None:
    """Any member can leave; it is then refused like any non-member."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob)
    left = await leave(bob, cid)
    assert left.seq == 1
    assert set(await alice.members(cid)) == {"alice"}
    await expect_code(DENIED, bob.send(cid, "still here?"))


async def test_direct_conversation_has_no_membership_changes(
    client: Callable[[str], Client],
) -> None:
    """Members cannot be added to, or leave, a direct conversation."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.direct(bob)
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, alice.add(cid, carol))
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, leave(bob, cid))
    assert set(await alice.members(cid)) == {"alice", "bob"}


async def test_channel_member_cannot_post(client: Callable[[str], Client]) -> None:
    """In a channel, a plain member's send is refused."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.open_channel(bob)
    await expect_code(DENIED, bob.send(cid, "can I talk?"))
    assert await alice.all_messages(cid) == []


async def test_channel_owner_and_admins_post(client: Callable[[str], Client]) -> None:
    """In a channel, the owner and admins post."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.open_channel(carol)
    await alice.add(cid, bob, role=ADMIN)
    assert (await alice.send(cid, "from the owner")).message.seq == 2
    assert (await bob.send(cid, "from an admin")).message.seq == 3
    assert [m.body for m in await carol.all_messages(cid)] == ["from the owner", "from an admin"]


async def test_channel_member_promoted_to_admin_can_post(client: Callable[[str], Client]) -> None:
    """A channel member may post once promoted to admin, and not after demotion."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.open_channel(bob)
    await set_role(alice, cid, bob, ADMIN)
    assert (await bob.send(cid, "now I can")).message.seq == 2
    await set_role(alice, cid, bob, MEMBER)
    await expect_code(DENIED, bob.send(cid, "and now?"))


async def test_member_cannot_update_the_conversation(client: Callable[[str], Client]) -> None:
    """Only the owner or an admin changes the title; a member is refused."""
    alice, bob = client("alice"), client("bob")
    cid = await alice.group(bob, title="original")
    await expect_code(
        DENIED,
        bob.chat.UpdateConversation(
            pb.UpdateConversationRequest(conversation_id=cid, title="mine now"), metadata=bob.md
        ),
    )
    assert (await bob.conversation(cid)).conversation.title == "original"


async def test_archived_conversation_is_read_only(client: Callable[[str], Client]) -> None:
    """Once archived, sends and additions fail with FAILED_PRECONDITION; reading still works."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    cid = await alice.group(bob)
    await alice.send(cid, "last words")
    updated = await alice.chat.UpdateConversation(
        pb.UpdateConversationRequest(conversation_id=cid, archived=True), metadata=alice.md
    )
    assert updated.conversation.archived
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, bob.send(cid, "hello?"))
    await expect_code(grpc.StatusCode.FAILED_PRECONDITION, alice.add(cid, carol))
    assert [m.body for m in await bob.all_messages(cid)] == ["last words"]
