"""The presence storage interface: connections with deadlines, and each user's aggregate state.

A user is online while any of their connections (one per socket: device id plus the gateway's
connection id) has a deadline in the future. Deadlines move forward with every heartbeat; a
connection whose deadline passed is swept by `expire`, which turns its user offline when it was
the last one. Nobody needs to tell the store that a device vanished.

Time is always passed in (`now`, seconds since the epoch), never read by a backend, so tests drive
expiry with a manual clock. Every method that changes a user's aggregate state does so atomically
and says whether the online flag flipped, so exactly one caller publishes each transition even
with several replicas sweeping the same Redis.

`last_seen` is the last moment the user was visibly online: the last heartbeat of the connection
that expired last, the time of a clean disconnect, or the moment they turned invisible (it does
not move while they stay invisible, so it reveals nothing).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Status(enum.IntEnum):
    """A user's chosen status; values match chatmesh.presence.v1.UserStatus."""

    AVAILABLE = 1
    AWAY = 2
    INVISIBLE = 3


class BackendUnavailable(Exception):
    """The presence store cannot be reached; the call may be retried."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    online: bool
    status: Status = Status.AVAILABLE
    custom_text: str = ""
    # Seconds since the epoch; None when never seen.
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    status: Status
    # The user's state after the heartbeat when it turned them online; else None.
    turned_online: UserRecord | None = None


class PresenceBackend(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def heartbeat(
        self,
        user_id: str,
        connection: str,
        now: float,
        ttl_s: float,
        known_status: Status | None = None,
    ) -> HeartbeatResult:
        """Keeps a connection alive until now + ttl_s (connect and heartbeat alike).

        `known_status` restores a status the store lost; a stored status always wins.
        """
        ...

    async def disconnect(self, user_id: str, connection: str, now: float) -> UserRecord | None:
        """Drops a connection; the user's state when that turned them offline, else None."""
        ...

    async def set_status(
        self, user_id: str, status: Status, custom_text: str, now: float
    ) -> tuple[UserRecord, UserRecord]:
        """Sets status and text; the user's state before and after."""
        ...

    async def get(self, user_ids: Sequence[str]) -> list[UserRecord]:
        """The state of each user, in order; unknown users are offline, never seen."""
        ...

    async def expire(self, now: float, ttl_s: float, limit: int) -> list[UserRecord]:
        """Drops connections whose deadline passed, for at most `limit` users.

        Returns the users this call turned offline. `ttl_s` tells when a connection's last
        heartbeat was (deadline - ttl), which becomes last_seen.
        """
        ...
