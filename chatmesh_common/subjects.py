"""Every bus subject of chatmesh: live subjects, durable subjects and the filters consumers use.

No subject string is built anywhere else. Live subjects (at most once, core NATS or in-process):

* `user_subject(user)`: everything addressed to one user's devices: chat_service's
  fan-out-on-write events and live signals, and presence_service's typing signals. Every event
  stream of that user (chat_service/streams.py) subscribes it.
* `conversation_subject(conversation)`: the events of a conversation that fans out on read.
* `presence_subject(user)`: a user's presence changes, between presence_service replicas.
* `suspension_subject(user)`: a moderator suspended the user; every event stream of that user
  (on any chat_service replica) ends.

Durable subjects (the event log for later consumers, JetStream's stream in a cluster):
`chatmesh.events.<conversation>.<kind>` (`durable_subject`), so a consumer filters by kind
(`kind_filter`, `NOTIFY_FILTERS`, `PUSH_FILTERS`, `SEARCH_FILTERS`) or by conversation
(`conversation_filter`).

Plain ids pass as they are; the rest (and every id starting with "x") is hex-encoded behind an
"x", so no two ids share a subject: subject tokens must not contain '.', '*', '>' or spaces.
"""

from __future__ import annotations

import enum
import re
from typing import Final

_PLAIN_TOKEN = re.compile(r"^[A-Za-wyz0-9_-][A-Za-z0-9_-]{0,63}$")

# Every durable subject lies under this filter (the JetStream stream's subjects).
EVENTS_SUBJECTS: Final = "chatmesh.events.>"


class DurableKind(enum.StrEnum):
    """The last token of a durable subject: what kind of event it carries."""

    CREATED = "created"
    EDITED = "edited"
    DELETED = "deleted"
    MEMBERSHIP = "membership"
    RECEIPT = "receipt"


def _token(raw: str) -> str:
    return raw if _PLAIN_TOKEN.match(raw) else "x" + raw.encode().hex()


def user_subject(user_id: str) -> str:
    return f"chatmesh.user.{_token(user_id)}"


def conversation_subject(conversation_id: str) -> str:
    return f"chatmesh.conv.{_token(conversation_id)}"


def presence_subject(user_id: str) -> str:
    return f"chatmesh.presence.{_token(user_id)}"


def suspension_subject(user_id: str) -> str:
    return f"chatmesh.suspended.{_token(user_id)}"


def durable_subject(conversation_id: str, kind: DurableKind) -> str:
    """`chatmesh.events.<conversation>.<kind>`."""
    return f"chatmesh.events.{_token(conversation_id)}.{kind}"


def kind_filter(kind: DurableKind) -> str:
    """The durable events of one kind, in every conversation."""
    return f"chatmesh.events.*.{kind}"


def conversation_filter(conversation_id: str) -> str:
    """Every durable event of one conversation."""
    return f"chatmesh.events.{_token(conversation_id)}.>"


# What notify_service reads: new messages (push to members with no online device).
NOTIFY_FILTERS: Final = (kind_filter(DurableKind.CREATED),)
# Everything notify_service's consumer reads: new messages, deletes (cancel a push still queued)
# and receipts (clear a read conversation on the reader's devices).
PUSH_FILTERS: Final = tuple(
    kind_filter(kind) for kind in (DurableKind.CREATED, DurableKind.DELETED, DurableKind.RECEIPT)
)
# What search reads: everything that changes a message's text or who may see it.
SEARCH_FILTERS: Final = tuple(
    kind_filter(kind)
    for kind in (
        DurableKind.CREATED,
        DurableKind.EDITED,
        DurableKind.DELETED,
        DurableKind.MEMBERSHIP,
    )
)
# What media_service reads: which messages attach which media, and which were deleted.
MEDIA_FILTERS: Final = (kind_filter(DurableKind.CREATED), kind_filter(DurableKind.DELETED))
