"""The cluster presence store on Redis (redis.asyncio), shared by every presence replica.

Keys, under a prefix (default `chatmesh:presence:`):

* `c:{user}`  sorted set: connection -> deadline (ms). Expires as a whole (PEXPIRE) two TTLs after
  the last heartbeat, so a store nobody sweeps still forgets dead connections.
* `u:{user}`  hash: `online` (0/1), `status`, `text`, `last_seen` (ms). Kept 30 days after the
  last change.
* `due`       sorted set: user -> the latest deadline of their connections (ZADD GT), the sweep
  queue: `expire` reads the users whose latest deadline passed.

Every change is one Lua script (atomic, one round trip), so concurrent heartbeats, disconnects and
sweeps from several replicas never lose a transition or report one twice. Steady state, a
heartbeat is one EVALSHA running ZADD, PEXPIRE, ZADD GT and HMGET (plus HSETNX when the gateway
echoes a known status). Keyspace notifications are not used: a vanished device is found by the
sweep over `due`, which needs nobody to tell us anything.

Time comes from the caller (`now`), not Redis's clock, so the contract suite drives expiry with a
manual clock against a real Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import BackendUnavailable, HeartbeatResult, Status, UserRecord

USER_KEY_TTL_MS = 30 * 24 * 3600 * 1000

# KEYS: conns, user, due.
# ARGV: connection, deadline ms, conns key ttl ms, user id, known status or '', user key ttl ms.
_HEARTBEAT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[3], 'GT', ARGV[2], ARGV[4])
if ARGV[5] ~= '' then redis.call('HSETNX', KEYS[2], 'status', ARGV[5]) end
local state = redis.call('HMGET', KEYS[2], 'online', 'status')
if state[1] == '1' then return {0, state[2] or ''} end
redis.call('HSET', KEYS[2], 'online', '1')
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, redis.call('HGETALL', KEYS[2])}
"""

# Shared tail of disconnect and expire: the last connection is gone.
_GO_OFFLINE = """
local function go_offline(user_key, last_seen, user_ttl)
  if redis.call('HGET', user_key, 'online') ~= '1' then return {0} end
  redis.call('HSET', user_key, 'online', '0')
  if redis.call('HGET', user_key, 'status') ~= '3' then
    redis.call('HSET', user_key, 'last_seen', last_seen)
  end
  redis.call('PEXPIRE', user_key, user_ttl)
  return {1, redis.call('HGETALL', user_key)}
end
"""

# KEYS: conns, user, due. ARGV: connection, now ms, user id, user ttl ms.
_DISCONNECT = (
    _GO_OFFLINE
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) > 0 then return {0} end
redis.call('ZREM', KEYS[3], ARGV[3])
return go_offline(KEYS[2], ARGV[2], ARGV[4])
"""
)

# KEYS: conns, user, due. ARGV: now ms, user id, ttl ms, user ttl ms.
_EXPIRE = (
    _GO_OFFLINE
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #latest > 0 then
  -- Still connected: requeue at the real latest deadline (ZADD GT only ever moved it forward).
  redis.call('ZADD', KEYS[3], latest[2], ARGV[2])
  return {0}
end
redis.call('ZREM', KEYS[3], ARGV[2])
local last_seen = tonumber(ARGV[1])
if #expired > 0 then last_seen = tonumber(expired[#expired]) - tonumber(ARGV[3]) end
return go_offline(KEYS[2], string.format('%d', last_seen), ARGV[4])
"""
)

# KEYS: user. ARGV: status, text, now ms, user ttl ms.
_SET_STATUS = """
local before = redis.call('HGETALL', KEYS[1])
local state = redis.call('HMGET', KEYS[1], 'online', 'status')
if ARGV[1] == '3' and state[2] ~= '3' and state[1] == '1' then
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'text', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {before, redis.call('HGETALL', KEYS[1])}
"""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(user_id: str, flat: Sequence[Any] | dict[Any, Any]) -> UserRecord:
    """A UserRecord from HGETALL output (a flat list from Lua, or a dict from the client)."""
    if isinstance(flat, dict):
        fields = {_text(k): _text(v) for k, v in flat.items()}
    else:
        items = [_text(v) for v in flat]
        fields = dict(zip(items[::2], items[1::2], strict=True))
    status = int(fields.get("status") or Status.AVAILABLE)
    last_seen = fields.get("last_seen")
    return UserRecord(
        user_id=user_id,
        online=fields.get("online") == "1",
        status=Status(status) if status in Status._value2member_map_ else Status.AVAILABLE,
        custom_text=fields.get("text", ""),
        last_seen=int(last_seen) / 1000 if last_seen else None,
    )


class RedisPresenceBackend:
    def __init__(
        self,
        url: str,
        prefix: str = "chatmesh:presence:",
        timeout_s: float = 1.0,
        max_connections: int = 64,
        client: aioredis.Redis | None = None,
    ) -> None:
        # Short timeouts: presence is best effort, and a call must fail fast (UNAVAILABLE) while
        # Redis is down rather than hold a gateway's heartbeat. At most `max_connections` calls
        # run at once; the rest queue on a semaphore, which is fair (FIFO) where redis-py's
        # BlockingConnectionPool lets busy callers starve others under load.
        self._pool: aioredis.ConnectionPool | None = None
        if client is None:
            self._pool = aioredis.ConnectionPool.from_url(
                url,
                max_connections=max_connections,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
            )
            client = aioredis.Redis(connection_pool=self._pool)
        self._redis = client
        self._slots = asyncio.Semaphore(max_connections)
        self._prefix = prefix
        self._due = f"{prefix}due"
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._disconnect = self._redis.register_script(_DISCONNECT)
        self._expire = self._redis.register_script(_EXPIRE)
        self._set_status = self._redis.register_script(_SET_STATUS)

    def _keys(self, user_id: str) -> list[str]:
        return [f"{self._prefix}c:{user_id}", f"{self._prefix}u:{user_id}", self._due]

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            async with self._slots:
                return await awaitable
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"presence store unavailable: {exc}") from exc

    async def open(self) -> None:
        """Checks the connection; a Redis that is down now is not fatal (heartbeats rebuild)."""

    async def close(self) -> None:
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    async def heartbeat(
        self,
        user_id: str,
        connection: str,
        now: float,
        ttl_s: float,
        known_status: Status | None = None,
    ) -> HeartbeatResult:
        result = await self._call(
            self._heartbeat(
                keys=self._keys(user_id),
                args=[
                    connection,
                    _ms(now + ttl_s),
                    # Twice the TTL: long enough for the sweep to read the last heartbeat.
                    _ms(2 * ttl_s),
                    user_id,
                    str(int(known_status)) if known_status else "",
                    USER_KEY_TTL_MS,
                ],
            )
        )
        if int(result[0]) == 0:
            raw = _text(result[1])
            return HeartbeatResult(Status(int(raw)) if raw else Status.AVAILABLE)
        record = _record(user_id, result[1])
        return HeartbeatResult(record.status, record)

    async def disconnect(self, user_id: str, connection: str, now: float) -> UserRecord | None:
        result = await self._call(
            self._disconnect(
                keys=self._keys(user_id),
                args=[connection, _ms(now), user_id, USER_KEY_TTL_MS],
            )
        )
        return _record(user_id, result[1]) if int(result[0]) else None

    async def set_status(
        self, user_id: str, status: Status, custom_text: str, now: float
    ) -> tuple[UserRecord, UserRecord]:
        before, after = await self._call(
            self._set_status(
                keys=[f"{self._prefix}u:{user_id}"],
                args=[int(status), custom_text, _ms(now), USER_KEY_TTL_MS],
            )
        )
        return _record(user_id, before), _record(user_id, after)

    async def get(self, user_ids: Sequence[str]) -> list[UserRecord]:
        if not user_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hgetall(f"{self._prefix}u:{user_id}")
            rows = await self._call(pipe.execute())
        return [
            _record(u, cast(dict[Any, Any], row)) for u, row in zip(user_ids, rows, strict=True)
        ]

    async def expire(self, now: float, ttl_s: float, limit: int) -> list[UserRecord]:
        due = await self._call(
            self._redis.zrangebyscore(self._due, "-inf", _ms(now), start=0, num=limit)
        )
        if not due:
            return []
        users = [_text(u) for u in due]
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                await self._expire(
                    keys=self._keys(user_id),
                    args=[_ms(now), user_id, _ms(ttl_s), USER_KEY_TTL_MS],
                    client=pipe,
                )
            results = await self._call(pipe.execute())
        return [
            _record(user_id, result[1])
            for user_id, result in zip(users, results, strict=True)
            if int(result[0])
        ]
