"""What this process knows of each conversation's members, as of one seq of its log.

Membership only changes by taking a seq (member events are events of the log), so "these users
have these roles as of seq n" stays true while the conversation's head is at n. Two things then
make the view as good as the member rows, with no read:

* a write: its round's LWT is `IF last_seq = n`, so a decision made against the view at n (is
  the sender a member?) holds at the commit, or the LWT fails and the round looks again;
* an access check: a head read that finds the head still at n confirms the view.

The view follows the log: this process's own rounds move it forward (applying their membership
events), and so does a head read from the cluster whose last round starts right after the view's
seq, since the head carries that round's events (`pending`). A head further ahead leaves the view
behind (not consulted at another seq); the member rows are read again and relearned.

A role learned from a member row is tagged with a head seq read before the row and at which the
log was known to be materialized, so the row holds at least that seq's membership. It may hold a
later change too; that change moved the head past the tag, so it can only make a later answer
(for a head at least as new) right, or refuse a little early a user whose removal is committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import EventKind

# A role of 0 means "not a member" in the view.
NOT_A_MEMBER = 0

_NO_MEMBERSHIP_CHANGE = frozenset(
    {EventKind.MESSAGE_CREATED, EventKind.MESSAGE_EDITED, EventKind.MESSAGE_DELETED}
)
_LEAVES = frozenset({EventKind.MEMBER_REMOVED, EventKind.MEMBER_LEFT})
_SETS_ROLE = frozenset({EventKind.MEMBER_ADDED, EventKind.MEMBER_ROLE_CHANGED})


@dataclass(slots=True)
class _View:
    seq: int
    roles: dict[str, int] = field(default_factory=dict)
    # Every member is in `roles` (read from the whole member partition): a user not in it is
    # not a member.
    complete: bool = False


class MembershipViews:
    """Per conversation: roles (0: not a member) of the users looked up, as of one seq."""

    def __init__(self, max_conversations: int, max_members: int) -> None:
        self._max_conversations = max_conversations
        self._max_members = max_members
        self._views: dict[str, _View] = {}

    def role_at(self, conversation_id: str, seq: int, user_id: str) -> int | None:
        """The user's role as of `seq` (0: not a member); None when not known at that seq."""
        view = self._views.get(conversation_id)
        if view is None or view.seq != seq:
            return None
        return view.roles.get(user_id, NOT_A_MEMBER if view.complete else None)

    def members_since(self, conversation_id: str, seq: int) -> list[str] | None:
        """Every member as of `seq` or a later seq; None when not known."""
        view = self._views.get(conversation_id)
        if view is None or not view.complete or view.seq < seq:
            return None
        return sorted(u for u, role in view.roles.items() if role)

    def learn(self, conversation_id: str, seq: int, roles: Mapping[str, int]) -> None:
        """Roles read from member rows that hold at least `seq`'s membership (see the module
        docstring). At seq 0 only members: a new conversation's first members are written
        after its head, so a row missing there may just not be written yet."""
        if seq <= 0:
            roles = {u: role for u, role in roles.items() if role}
        if not roles:
            return
        view = self._views.get(conversation_id)
        if view is not None and view.seq > seq:
            return  # knows a newer state: keep that
        if view is None or view.seq < seq:
            if len(self._views) >= self._max_conversations:
                self._views.clear()  # hints only: dropping them costs reads, never correctness
            view = self._views[conversation_id] = _View(seq)
        if len(view.roles) + len(roles) <= self._max_members:
            view.roles.update(roles)

    def learn_all(self, conversation_id: str, seq: int, members: Mapping[str, int]) -> None:
        """Every member, read from the whole member partition, holding at least `seq`'s
        membership. Not at seq 0 (see `learn`), nor past the size bound."""
        view = self._views.get(conversation_id)
        if seq <= 0 or len(members) > self._max_members or (view is not None and view.seq > seq):
            return
        if view is None and len(self._views) >= self._max_conversations:
            self._views.clear()
        self._views[conversation_id] = _View(seq, dict(members), complete=True)

    def advance(
        self, conversation_id: str, from_seq: int, events: Sequence[Mapping[str, Any]]
    ) -> None:
        """A round committed right after `from_seq` with these events: a view at `from_seq`
        moves to the round's last seq, with its membership events applied; any other view is
        left as it is (behind, so not consulted at the new seq)."""
        view = self._views.get(conversation_id)
        if view is None or view.seq != from_seq or not events:
            return
        try:
            changes = _membership_changes(from_seq, events)
        except (KeyError, TypeError, ValueError):
            changes = None
        if changes is None:
            # Events this view cannot follow: forget it rather than guess.
            del self._views[conversation_id]
            return
        view.roles.update(changes)
        view.seq = from_seq + len(events)

    def catch_up(
        self, conversation_id: str, last_seq: int, pending: Sequence[Mapping[str, Any]]
    ) -> None:
        """A head read at `last_seq` whose last round is `pending`: moves a view that stands
        right before that round over it."""
        if pending:
            self.advance(conversation_id, last_seq - len(pending), pending)

    def drop(self, conversation_id: str) -> None:
        self._views.pop(conversation_id, None)

    def clear(self) -> None:
        self._views.clear()


def _membership_changes(
    from_seq: int, events: Sequence[Mapping[str, Any]]
) -> dict[str, int] | None:
    """The roles a round's events set (0: left), in order; None for a round that does not
    follow `from_seq` or holds an event this view does not know."""
    if [int(e["seq"]) for e in events] != list(range(from_seq + 1, from_seq + len(events) + 1)):
        return None
    changes: dict[str, int] = {}
    for e in events:
        kind = EventKind(int(e["kind"]))
        if kind in _NO_MEMBERSHIP_CHANGE:
            continue
        if kind in _LEAVES:
            changes[str(e["member"])] = NOT_A_MEMBER
        elif kind in _SETS_ROLE and int(e.get("role", 0)):
            changes[str(e["member"])] = int(e["role"])
        else:
            return None
    return changes
