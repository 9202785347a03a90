"""The cluster store's membership view on its own (no server): how it follows a log's rounds."""

from __future__ import annotations

from typing import Any

from chat_service.store.base import EventKind, Role
from chat_service.store.scylla.membership import NOT_A_MEMBER, MembershipViews

CID = "c1"


def message(seq: int) -> dict[str, Any]:
    return {"seq": seq, "kind": int(EventKind.MESSAGE_CREATED), "actor": "a", "at": 1.0}


def member_event(seq: int, kind: EventKind, user_id: str, role: int = 0) -> dict[str, Any]:
    return {"seq": seq, "kind": int(kind), "actor": "a", "at": 1.0, "member": user_id, "role": role}


def test_a_view_answers_only_at_its_seq() -> None:
    """Roles learned at seq n answer at n, not before or after; unknown users are unknown."""
    views = MembershipViews(10, 10)
    views.learn(CID, 3, {"bob": int(Role.MEMBER), "eve": NOT_A_MEMBER})
    assert views.role_at(CID, 3, "bob") == Role.MEMBER
    assert views.role_at(CID, 3, "eve") == NOT_A_MEMBER
    assert views.role_at(CID, 3, "carol") is None
    assert views.role_at(CID, 2, "bob") is None and views.role_at(CID, 4, "bob") is None


def test_at_seq_zero_only_members_are_learned() -> None:
    """A new conversation's member rows may not be written yet: a missing row is not learned."""
    views = MembershipViews(10, 10)
    views.learn(CID, 0, {"bob": NOT_A_MEMBER, "alice": int(Role.OWNER)})
    assert views.role_at(CID, 0, "alice") == Role.OWNER
    assert views.role_at(CID, 0, "bob") is None
    views.learn_all(CID, 0, {"alice": int(Role.OWNER)})
    assert views.members_since(CID, 0) is None


def test_a_round_right_after_the_view_moves_it_with_its_membership_events() -> None:
    """Messages keep roles; adds, role changes, removals and leaves apply."""
    views = MembershipViews(10, 10)
    views.learn(CID, 1, {"bob": int(Role.MEMBER), "carol": int(Role.MEMBER)})
    views.catch_up(CID, 3, [message(2), message(3)])
    assert views.role_at(CID, 3, "bob") == Role.MEMBER
    views.advance(
        CID,
        3,
        [
            member_event(4, EventKind.MEMBER_REMOVED, "bob"),
            member_event(5, EventKind.MEMBER_ROLE_CHANGED, "carol", int(Role.ADMIN)),
            member_event(6, EventKind.MEMBER_ADDED, "dave", int(Role.MEMBER)),
            member_event(7, EventKind.MEMBER_LEFT, "dave"),
        ],
    )
    assert views.role_at(CID, 7, "bob") == NOT_A_MEMBER
    assert views.role_at(CID, 7, "carol") == Role.ADMIN
    assert views.role_at(CID, 7, "dave") == NOT_A_MEMBER


def test_a_view_left_behind_is_not_moved() -> None:
    """A head more than one round ahead (or an older one) leaves the view where it is."""
    views = MembershipViews(10, 10)
    views.learn(CID, 1, {"bob": int(Role.MEMBER)})
    views.catch_up(CID, 5, [message(5)])
    views.catch_up(CID, 1, [message(1)])
    assert views.role_at(CID, 1, "bob") == Role.MEMBER
    assert views.role_at(CID, 5, "bob") is None


def test_an_event_the_view_cannot_follow_drops_it() -> None:
    """An unknown kind or a malformed event forgets the view rather than guessing."""
    views = MembershipViews(10, 10)
    views.learn(CID, 1, {"bob": int(Role.MEMBER)})
    views.advance(CID, 1, [{"seq": 2, "kind": 99}])
    assert views.role_at(CID, 1, "bob") is None and views.role_at(CID, 2, "bob") is None
    views.learn(CID, 1, {"bob": int(Role.MEMBER)})
    views.advance(CID, 1, [{"seq": 2, "kind": int(EventKind.MEMBER_REMOVED)}])
    assert views.role_at(CID, 2, "bob") is None


def test_every_member_is_known_once_the_partition_was_read() -> None:
    """learn_all: users not in it are not members; members_since answers at or after it."""
    views = MembershipViews(10, 10)
    views.learn_all(CID, 2, {"alice": int(Role.OWNER), "bob": int(Role.MEMBER)})
    assert views.role_at(CID, 2, "mallory") == NOT_A_MEMBER
    assert views.members_since(CID, 2) == ["alice", "bob"]
    assert views.members_since(CID, 3) is None
    views.advance(CID, 2, [member_event(3, EventKind.MEMBER_REMOVED, "bob")])
    assert views.members_since(CID, 3) == ["alice"]
    assert views.members_since(CID, 1) == ["alice"]


def test_a_newer_view_is_not_replaced_by_an_older_read() -> None:
    """Rows learned at a seq below the view's are ignored."""
    views = MembershipViews(10, 10)
    views.learn(CID, 5, {"bob": NOT_A_MEMBER})
    views.learn(CID, 4, {"bob": int(Role.MEMBER)})
    views.learn_all(CID, 4, {"bob": int(Role.MEMBER)})
    assert views.role_at(CID, 5, "bob") == NOT_A_MEMBER
