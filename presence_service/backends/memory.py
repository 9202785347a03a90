"""The embedded presence store: dicts in one process (for `chatmesh dev` and one replica)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from .base import HeartbeatResult, Status, UserRecord


@dataclass
class _User:
    # connection -> deadline
    connections: dict[str, float] = field(default_factory=dict)
    online: bool = False
    status: Status | None = None
    custom_text: str = ""
    last_seen: float | None = None

    def record(self, user_id: str) -> UserRecord:
        return UserRecord(
            user_id,
            self.online,
            self.status or Status.AVAILABLE,
            self.custom_text,
            self.last_seen,
        )


class MemoryPresenceBackend:
    """Same contract as the Redis backend; a heap of (deadline, user) drives expiry."""

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}
        # Lazy heap: stale entries (a deadline that moved on) are skipped when popped.
        self._due: list[tuple[float, str]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _user(self, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        return user

    async def heartbeat(
        self,
        user_id: str,
        connection: str,
        now: float,
        ttl_s: float,
        known_status: Status | None = None,
    ) -> HeartbeatResult:
        user = self._user(user_id)
        deadline = now + ttl_s
        user.connections[connection] = deadline
        heapq.heappush(self._due, (deadline, user_id))
        if user.status is None and known_status is not None:
            user.status = known_status
        status = user.status or Status.AVAILABLE
        if user.online:
            return HeartbeatResult(status)
        user.online = True
        return HeartbeatResult(status, user.record(user_id))

    def _go_offline(self, user_id: str, user: _User, last_seen: float) -> UserRecord:
        user.online = False
        if user.status != Status.INVISIBLE:
            user.last_seen = last_seen
        return user.record(user_id)

    async def disconnect(self, user_id: str, connection: str, now: float) -> UserRecord | None:
        user = self._users.get(user_id)
        if user is None:
            return None
        user.connections.pop(connection, None)
        user.connections = {c: d for c, d in user.connections.items() if d > now}
        if user.connections or not user.online:
            return None
        return self._go_offline(user_id, user, now)

    async def set_status(
        self, user_id: str, status: Status, custom_text: str, now: float
    ) -> tuple[UserRecord, UserRecord]:
        user = self._user(user_id)
        before = user.record(user_id)
        if status == Status.INVISIBLE and before.status != Status.INVISIBLE and user.online:
            user.last_seen = now
        user.status = status
        user.custom_text = custom_text
        return before, user.record(user_id)

    async def get(self, user_ids: Sequence[str]) -> list[UserRecord]:
        out = []
        for user_id in user_ids:
            user = self._users.get(user_id)
            out.append(user.record(user_id) if user else UserRecord(user_id, False))
        return out

    async def expire(self, now: float, ttl_s: float, limit: int) -> list[UserRecord]:
        changed: list[UserRecord] = []
        seen = 0
        while self._due and self._due[0][0] <= now and seen < limit:
            _deadline, user_id = heapq.heappop(self._due)
            user = self._users.get(user_id)
            if user is None:
                continue
            expired = [d for d in user.connections.values() if d <= now]
            if not expired:
                continue  # a stale heap entry: the deadline moved on
            seen += 1
            user.connections = {c: d for c, d in user.connections.items() if d > now}
            if not user.connections and user.online:
                changed.append(self._go_offline(user_id, user, max(expired) - ttl_s))
        return changed
