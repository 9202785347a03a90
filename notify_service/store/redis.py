"""The cluster NotifyStore on Redis (redis.asyncio), shared by every notify_service replica.

Keys, under a prefix P (default `chatmesh:notify:`); `{u}`, `{d}`, `{c}` are the user, device and
conversation ids with `%` and `:` escaped (`%25`, `%3A`), `{m}` a push id zero-padded to 15
digits (so members with equal scores sort by id, like SQLite's `ORDER BY not_before, push_id`):

* `dev:{u}:{d}`   hash: platform, token, keys (JSON), app_id, registered_at, last_push_at.
* `devs:{u}`      set: the user's device ids.
* `tok:{platform}:{token}`  string: JSON [user, device] owning the target (one token, one device).
* `pv:{u}`        string: the user's preview level.  `cs:{u}`  hash: conversation -> JSON setting.
* `next:push`, `next:dead`  counters: push and dead-letter ids.
* `p:{id}`        hash: one push row (user, device, conv, seq, kind, message, event_at,
  not_before, attempts, state, last_error, count). The message is kept as queued; a coalesced
  push's `count` is written into its data when read.
* `k:{u}:{d}:{c}:{seq}:{kind}`  string (SET NX): the key was queued once; gone with its row.
* `s:{u}:{d}:{c}:{seq}:{kind}`  string (SET NX): the sent set, with `sent` (sorted set: key ->
  sent_at) for the purge.
* Per state of a row, the indexes it is in:
  - queued: `due` (sorted set: m -> not_before), `qd:{u}:{d}` (set, for a gone target) and,
    for MESSAGE pushes, `qm:{u}:{d}:{c}` and `qc:{c}` (sorted sets: m -> seq, for coalescing
    and cancelling);
  - inflight: `inflight` (sorted set: m -> lease deadline);
  - sent, gone, cancelled, coalesced: `done` (sorted set: m -> event_at, for the purge);
  - dead: none (its dead letter is listed).
* `msg:{u}:{c}`   sorted set: the MESSAGE pushes of a user and conversation (score: id) and
  `clr:{u}:{c}` string: the id of the last CLEAR push, for `pushed_since_clear`.
* `dl` and `dlu:{u}`  sorted sets: dead letters (score: their id, which grows with failed_at,
  so newest first is by time), each a hash `dlr:{id}`.

Every write is one Lua script (atomic, one round trip), so any number of replicas share the
queue: a claim moves due rows from `due` to `inflight` with a lease deadline (`now + lease_s`),
and only one replica gets each row. A replica that dies mid-call leaves its rows `inflight`;
once their lease passed, the next claim (of any replica) queues them again first, which is the
SQLite store's restart recovery without anybody having to notice the death. A push the provider
accepted just before the death is then sent again (its collapse key makes the device replace
the first copy); `lease_s` must exceed the longest provider call, or a slow call repeats too.

The scripts build keys from the prefix, so the store needs a standalone (or replicated,
Sentinel) Redis, not Redis Cluster. Time comes from the caller (`now`), as in the SQLite store.
Finished rows and sent keys are forgotten by `purge` (in batches, so a large purge does not
block Redis), not by TTLs: a key must live exactly as long as the SQLite store keeps it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ..providers.base import Platform, PushTarget
from .base import (
    ConversationSetting,
    DeadLetterRecord,
    DeviceRecord,
    EnqueueResult,
    Level,
    NewPush,
    Preview,
    PushKind,
    QueuedPush,
    State,
    UserSettings,
)
from .sqlite import _with_count, decode_message, encode_message

PURGE_BATCH = 500

# Shared by every script: ARGV[1] is the prefix.
_LIB = """
local P = ARGV[1]
local function enc(s)
  return (string.gsub(string.gsub(s, '%%', '%%25'), ':', '%%3A'))
end
local function pid(id) return string.format('%015d', tonumber(id)) end
local function num(x) return string.format('%.17g', x) end
local function rowkey(id) return P .. 'p:' .. tonumber(id) end
local function devkey(u, d) return P .. 'dev:' .. enc(u) .. ':' .. enc(d) end
local function pushkey(u, d, c, seq, kind)
  return enc(u) .. ':' .. enc(d) .. ':' .. enc(c) .. ':' .. seq .. ':' .. kind
end
local FIELDS = {'user', 'device', 'conv', 'seq', 'kind', 'state', 'not_before', 'event_at'}
local function load(id)
  local v = redis.call('HMGET', rowkey(id), unpack(FIELDS))
  if not v[1] then return nil end
  return {id = tonumber(id), m = pid(id), u = v[1], d = v[2], c = v[3], seq = v[4],
          kind = v[5], state = v[6], not_before = v[7], event_at = v[8]}
end
-- Takes the row out of every state index.
local function leave(r)
  redis.call('ZREM', P .. 'due', r.m)
  redis.call('SREM', P .. 'qd:' .. enc(r.u) .. ':' .. enc(r.d), r.m)
  redis.call('ZREM', P .. 'inflight', r.m)
  redis.call('ZREM', P .. 'done', r.m)
  if r.kind == 'message' then
    redis.call('ZREM', P .. 'qm:' .. enc(r.u) .. ':' .. enc(r.d) .. ':' .. enc(r.c), r.m)
    redis.call('ZREM', P .. 'qc:' .. enc(r.c), r.m)
  end
end
-- Puts the row in `state` and its indexes; `score` is the lease deadline of an inflight row.
local function enter(r, state, score)
  leave(r)
  redis.call('HSET', rowkey(r.id), 'state', state)
  if state == 'queued' then
    redis.call('ZADD', P .. 'due', r.not_before, r.m)
    redis.call('SADD', P .. 'qd:' .. enc(r.u) .. ':' .. enc(r.d), r.m)
    if r.kind == 'message' then
      redis.call('ZADD', P .. 'qm:' .. enc(r.u) .. ':' .. enc(r.d) .. ':' .. enc(r.c), r.seq, r.m)
      redis.call('ZADD', P .. 'qc:' .. enc(r.c), r.seq, r.m)
    end
  elseif state == 'inflight' then
    redis.call('ZADD', P .. 'inflight', score, r.m)
  elseif state ~= 'dead' then
    redis.call('ZADD', P .. 'done', r.event_at, r.m)
  end
end
local function remove_device(u, d)
  local dk = devkey(u, d)
  local t = redis.call('HMGET', dk, 'platform', 'token')
  if not t[1] then return 0 end
  local tk = P .. 'tok:' .. enc(t[1]) .. ':' .. enc(t[2])
  local owner = redis.call('GET', tk)
  if owner then
    local o = cjson.decode(owner)
    if o[1] == u and o[2] == d then redis.call('DEL', tk) end
  end
  redis.call('DEL', dk)
  redis.call('SREM', P .. 'devs:' .. enc(u), d)
  return 1
end
"""

# ARGV: P, user, device, platform, token, keys, app_id, now.
_REGISTER = (
    _LIB
    + """
local u, d = ARGV[2], ARGV[3]
local tk = P .. 'tok:' .. enc(ARGV[4]) .. ':' .. enc(ARGV[5])
local owner = redis.call('GET', tk)
if owner then
  local o = cjson.decode(owner)
  if not (o[1] == u and o[2] == d) then remove_device(o[1], o[2]) end
end
local dk = devkey(u, d)
local t = redis.call('HMGET', dk, 'platform', 'token')
if t[1] and not (t[1] == ARGV[4] and t[2] == ARGV[5]) then
  local old = P .. 'tok:' .. enc(t[1]) .. ':' .. enc(t[2])
  local o = redis.call('GET', old)
  if o then
    o = cjson.decode(o)
    if o[1] == u and o[2] == d then redis.call('DEL', old) end
  end
end
redis.call('HSET', dk, 'platform', ARGV[4], 'token', ARGV[5], 'keys', ARGV[6],
           'app_id', ARGV[7], 'registered_at', ARGV[8])
redis.call('SADD', P .. 'devs:' .. enc(u), d)
redis.call('SET', tk, cjson.encode({u, d}))
return 1
"""
)

# ARGV: P, user, device.
_UNREGISTER = _LIB + "return remove_device(ARGV[2], ARGV[3])"

# ARGV: P, user, device, token.
_REMOVE_TARGET = (
    _LIB
    + """
local u, d = ARGV[2], ARGV[3]
local removed = 0
if redis.call('HGET', devkey(u, d), 'token') == ARGV[4] then removed = remove_device(u, d) end
for _, m in ipairs(redis.call('SMEMBERS', P .. 'qd:' .. enc(u) .. ':' .. enc(d))) do
  local r = load(m)
  if r then enter(r, 'gone') else redis.call('SREM', P .. 'qd:' .. enc(u) .. ':' .. enc(d), m) end
end
return removed
"""
)

# ARGV: P, min_interval_s, then per push: user, device, conv, seq, kind, message, event_at,
# not_before. Returns {queued, repeated, coalesced}.
_ENQUEUE = (
    _LIB
    + """
local interval = tonumber(ARGV[2])
local queued, repeated, coalesced = 0, 0, 0
for i = 3, #ARGV, 8 do
  local u, d, c, seq, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = pushkey(u, d, c, seq, kind)
  if redis.call('EXISTS', P .. 'k:' .. key) == 1 or redis.call('EXISTS', P .. 's:' .. key) == 1
  then
    repeated = repeated + 1
  else
    local id = redis.call('INCR', P .. 'next:push')
    local not_before = ARGV[i + 7]
    local count = 1
    local earlier = nil
    if kind == 'message' then
      local top = redis.call('ZREVRANGE', P .. 'qm:' .. enc(u) .. ':' .. enc(d) .. ':' .. enc(c),
                             0, 0)
      if top[1] then earlier = load(top[1]) end
    end
    if earlier then
      not_before = earlier.not_before
      count = tonumber(redis.call('HGET', rowkey(earlier.id), 'count')) + 1
      enter(earlier, 'coalesced')
      coalesced = coalesced + 1
    else
      local last = redis.call('HGET', devkey(u, d), 'last_push_at')
      if last and tonumber(last) + interval > tonumber(not_before) then
        not_before = num(tonumber(last) + interval)
      end
    end
    redis.call('SET', P .. 'k:' .. key, id)
    redis.call('HSET', rowkey(id), 'user', u, 'device', d, 'conv', c, 'seq', seq, 'kind', kind,
               'message', ARGV[i + 5], 'event_at', ARGV[i + 6], 'not_before', not_before,
               'attempts', 0, 'state', 'queued', 'last_error', '', 'count', count)
    local r = {id = id, m = pid(id), u = u, d = d, c = c, seq = seq, kind = kind,
               not_before = not_before, event_at = ARGV[i + 6]}
    enter(r, 'queued')
    if kind == 'message' then
      redis.call('ZADD', P .. 'msg:' .. enc(u) .. ':' .. enc(c), id, r.m)
    else
      redis.call('SET', P .. 'clr:' .. enc(u) .. ':' .. enc(c), id)
    end
    queued = queued + 1
  end
end
return {queued, repeated, coalesced}
"""
)

# ARGV: P, conv, seq, user or '', up_to (0/1).
_CANCEL = (
    _LIB
    + """
local low = ARGV[3]
if ARGV[5] == '1' then low = '-inf' end
local n = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'qc:' .. enc(ARGV[2]), low, ARGV[3])) do
  local r = load(m)
  if r == nil then
    redis.call('ZREM', P .. 'qc:' .. enc(ARGV[2]), m)
  elseif r.state == 'queued' and (ARGV[4] == '' or r.u == ARGV[4]) then
    enter(r, 'cancelled')
    n = n + 1
  end
end
return n
"""
)

# ARGV: P, now, limit, lease deadline. Returns the claimed rows' ids.
_CLAIM = (
    _LIB
    + """
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'inflight', '-inf', ARGV[2])) do
  local r = load(m)
  if r then enter(r, 'queued') else redis.call('ZREM', P .. 'inflight', m) end
end
local ids = {}
local due = redis.call('ZRANGEBYSCORE', P .. 'due', '-inf', ARGV[2], 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, m in ipairs(due) do
  local r = load(m)
  if r then
    redis.call('HINCRBY', rowkey(r.id), 'attempts', 1)
    enter(r, 'inflight', ARGV[4])
    table.insert(ids, r.id)
  else
    redis.call('ZREM', P .. 'due', m)
  end
end
return ids
"""
)

# ARGV: P, push id, now.
_MARK_SENT = (
    _LIB
    + """
local r = load(ARGV[2])
if r == nil then return 0 end
enter(r, 'sent')
local key = pushkey(r.u, r.d, r.c, r.seq, r.kind)
if redis.call('SET', P .. 's:' .. key, ARGV[3], 'NX') then
  redis.call('ZADD', P .. 'sent', ARGV[3], key)
end
local dk = devkey(r.u, r.d)
if redis.call('EXISTS', dk) == 1 then redis.call('HSET', dk, 'last_push_at', ARGV[3]) end
return 1
"""
)

# ARGV: P, push id, not_before, error.
_RETRY = (
    _LIB
    + """
local r = load(ARGV[2])
if r == nil then return 0 end
redis.call('HSET', rowkey(r.id), 'not_before', ARGV[3], 'last_error', ARGV[4])
r.not_before = ARGV[3]
enter(r, 'queued')
return 1
"""
)

# ARGV: P, push id, state, error.
_FINISH = (
    _LIB
    + """
local r = load(ARGV[2])
if r == nil then return 0 end
redis.call('HSET', rowkey(r.id), 'last_error', ARGV[4])
enter(r, ARGV[3], ARGV[5])
return 1
"""
)

# ARGV: P, push id, error, now. Returns {dead id, platform, attempts} or nil.
_DEAD_LETTER = (
    _LIB
    + """
local r = load(ARGV[2])
if r == nil then return nil end
local platform = redis.call('HGET', devkey(r.u, r.d), 'platform') or 'webhook'
local attempts = redis.call('HGET', rowkey(r.id), 'attempts')
redis.call('HSET', rowkey(r.id), 'last_error', ARGV[3])
enter(r, 'dead')
local id = redis.call('INCR', P .. 'next:dead')
redis.call('HSET', P .. 'dlr:' .. id, 'push_id', r.id, 'user', r.u, 'device', r.d,
           'platform', platform, 'conv', r.c, 'seq', r.seq, 'kind', r.kind,
           'attempts', attempts, 'last_error', ARGV[3], 'failed_at', ARGV[4], 'pending', 1)
redis.call('ZADD', P .. 'dl', id, pid(id))
redis.call('ZADD', P .. 'dlu:' .. enc(r.u), id, pid(id))
return {id, platform, attempts}
"""
)

# ARGV: P, dead letter id, now. Returns 0 when there is no such dead letter.
_REPLAY = (
    _LIB
    + """
local dk = P .. 'dlr:' .. ARGV[2]
local push_id = redis.call('HGET', dk, 'push_id')
if not push_id then return 0 end
redis.call('HSET', dk, 'pending', 0)
local r = load(push_id)
if r and r.state == 'dead' then
  redis.call('HSET', rowkey(r.id), 'attempts', 0, 'not_before', ARGV[3], 'last_error', '')
  r.not_before = ARGV[3]
  enter(r, 'queued')
end
return 1
"""
)

# ARGV: P, user, conv. 1 when a MESSAGE push queued, inflight or sent follows the last CLEAR.
_PUSHED_SINCE_CLEAR = (
    _LIB
    + """
local last = redis.call('GET', P .. 'clr:' .. enc(ARGV[2]) .. ':' .. enc(ARGV[3]))
local low = '-inf'
if last then low = '(' .. last end
local ms = redis.call('ZREVRANGEBYSCORE', P .. 'msg:' .. enc(ARGV[2]) .. ':' .. enc(ARGV[3]),
                      '+inf', low)
for _, m in ipairs(ms) do
  local state = redis.call('HGET', rowkey(m), 'state')
  if state == 'queued' or state == 'inflight' or state == 'sent' then return 1 end
end
return 0
"""
)

# ARGV: P, before, batch. Forgets up to `batch` finished rows and `batch` sent keys of events
# before `before`; returns {rows, sent keys}.
_PURGE = (
    _LIB
    + """
local rows, sent = 0, 0
local old = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', '(' .. ARGV[2], 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, m in ipairs(old) do
  local r = load(m)
  redis.call('ZREM', P .. 'done', m)
  if r then
    redis.call('DEL', rowkey(r.id))
    redis.call('DEL', P .. 'k:' .. pushkey(r.u, r.d, r.c, r.seq, r.kind))
    local uc = enc(r.u) .. ':' .. enc(r.c)
    if r.kind == 'message' then
      redis.call('ZREM', P .. 'msg:' .. uc, m)
    elseif redis.call('GET', P .. 'clr:' .. uc) == tostring(r.id) then
      redis.call('DEL', P .. 'clr:' .. uc)
    end
    rows = rows + 1
  end
end
local keys = redis.call('ZRANGEBYSCORE', P .. 'sent', '-inf', '(' .. ARGV[2], 'LIMIT', 0,
                        tonumber(ARGV[3]))
for _, key in ipairs(keys) do
  redis.call('DEL', P .. 's:' .. key)
  redis.call('ZREM', P .. 'sent', key)
  sent = sent + 1
end
return {rows, sent}
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _device(user_id: str, device_id: str, h: dict[str, str]) -> DeviceRecord:
    target = PushTarget(Platform(h["platform"]), h["token"], json.loads(h["keys"]), h["app_id"])
    return DeviceRecord(user_id, device_id, target, float(h["registered_at"]))


def _push(push_id: int, h: dict[str, str]) -> QueuedPush:
    count = int(h["count"])
    message = decode_message(h["message"])
    return QueuedPush(
        push_id=push_id,
        user_id=h["user"],
        device_id=h["device"],
        conversation_id=h["conv"],
        seq=int(h["seq"]),
        kind=PushKind(h["kind"]),
        message=_with_count(message, count) if count > 1 else message,
        event_at=float(h["event_at"]),
        not_before=float(h["not_before"]),
        attempts=int(h["attempts"]),
        state=State(h["state"]),
        last_error=h["last_error"],
        count=count,
    )


def _dead(dead_letter_id: int, h: dict[str, str]) -> DeadLetterRecord:
    return DeadLetterRecord(
        dead_letter_id=dead_letter_id,
        push_id=int(h["push_id"]),
        user_id=h["user"],
        device_id=h["device"],
        platform=Platform(h["platform"]),
        conversation_id=h["conv"],
        seq=int(h["seq"]),
        kind=PushKind(h["kind"]),
        attempts=int(h["attempts"]),
        last_error=h["last_error"],
        failed_at=float(h["failed_at"]),
        pending=h["pending"] == "1",
    )


def _enc(part: str) -> str:
    """A key part, escaped as the scripts' `enc` does."""
    return part.replace("%", "%25").replace(":", "%3A")


def _setting(conversation_id: str, raw: str) -> ConversationSetting:
    level, muted_until, muted_forever = json.loads(raw)
    return ConversationSetting(conversation_id, Level(level), muted_until, bool(muted_forever))


class RedisNotifyStore:
    def __init__(
        self,
        url: str,
        prefix: str = "chatmesh:notify:",
        lease_s: float = 120.0,
        timeout_s: float = 5.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        self._pool: aioredis.ConnectionPool | None = None
        if client is None:
            self._pool = aioredis.ConnectionPool.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
            )
            client = aioredis.Redis(connection_pool=self._pool)
        self._redis = client
        self._p = prefix
        self._lease_s = lease_s
        r = self._redis
        self._register = r.register_script(_REGISTER)
        self._unregister = r.register_script(_UNREGISTER)
        self._remove_target = r.register_script(_REMOVE_TARGET)
        self._enqueue = r.register_script(_ENQUEUE)
        self._cancel = r.register_script(_CANCEL)
        self._claim = r.register_script(_CLAIM)
        self._mark_sent = r.register_script(_MARK_SENT)
        self._retry = r.register_script(_RETRY)
        self._finish = r.register_script(_FINISH)
        self._dead_letter = r.register_script(_DEAD_LETTER)
        self._replay = r.register_script(_REPLAY)
        self._pushed_since_clear = r.register_script(_PUSHED_SINCE_CLEAR)
        self._purge = r.register_script(_PURGE)

    async def _run(self, script: Any, *args: Any) -> Any:
        return await script(keys=[], args=[self._p, *args])

    async def open(self) -> None:
        """Checks the connection. Rows a stopped replica left `inflight` are queued again by
        the first claim after their lease."""
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    # -- devices -----------------------------------------------------------------------------

    async def register_device(
        self, user_id: str, device_id: str, target: PushTarget, now: float
    ) -> DeviceRecord:
        await self._run(
            self._register,
            user_id,
            device_id,
            target.platform.value,
            target.token,
            json.dumps(dict(target.keys), sort_keys=True),
            target.app_id,
            repr(now),
        )
        return DeviceRecord(user_id, device_id, target, now)

    async def unregister_device(self, user_id: str, device_id: str) -> bool:
        return bool(await self._run(self._unregister, user_id, device_id))

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        ids = sorted(_text(d) for d in await self._redis.smembers(f"{self._p}devs:{_enc(user_id)}"))
        out = []
        for device_id in ids:
            device = await self.get_device(user_id, device_id)
            if device is not None:
                out.append(device)
        return out

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[DeviceRecord]]:
        wanted = list(dict.fromkeys(user_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in wanted:
                pipe.smembers(f"{self._p}devs:{_enc(user_id)}")
            id_sets = await pipe.execute()
        keys = [(u, _text(d)) for u, ids in zip(wanted, id_sets, strict=True) for d in sorted(ids)]
        if not keys:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, device_id in keys:
                pipe.hgetall(f"{self._p}dev:{_enc(user_id)}:{_enc(device_id)}")
            raws = await pipe.execute()
        out: dict[str, list[DeviceRecord]] = {}
        for (user_id, device_id), raw in zip(keys, raws, strict=True):
            if raw:
                out.setdefault(user_id, []).append(_device(user_id, device_id, _fields(raw)))
        return out

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        raw = await self._redis.hgetall(f"{self._p}dev:{_enc(user_id)}:{_enc(device_id)}")
        return _device(user_id, device_id, _fields(raw)) if raw else None

    async def remove_target(self, user_id: str, device_id: str, token: str) -> bool:
        return bool(await self._run(self._remove_target, user_id, device_id, token))

    # -- settings ----------------------------------------------------------------------------

    async def get_settings(self, user_id: str) -> UserSettings:
        preview = await self._redis.get(f"{self._p}pv:{_enc(user_id)}")
        raw = _fields(await self._redis.hgetall(f"{self._p}cs:{_enc(user_id)}"))
        conversations = tuple(_setting(c, raw[c]) for c in sorted(raw))
        return UserSettings(Preview(int(preview)) if preview else Preview.FULL, conversations)

    async def update_settings(
        self,
        user_id: str,
        preview: Preview | None,
        conversations: Sequence[ConversationSetting],
    ) -> UserSettings:
        async with self._redis.pipeline(transaction=True) as pipe:
            if preview is not None:
                pipe.set(f"{self._p}pv:{_enc(user_id)}", int(preview))
            key = f"{self._p}cs:{_enc(user_id)}"
            for c in conversations:
                if c.is_default:
                    pipe.hdel(key, c.conversation_id)
                else:
                    value = json.dumps([int(c.level), c.muted_until, int(c.muted_forever)])
                    pipe.hset(key, c.conversation_id, value)
            await pipe.execute()
        return await self.get_settings(user_id)

    async def settings_for(
        self, user_ids: Sequence[str], conversation_id: str
    ) -> dict[str, tuple[Preview, ConversationSetting]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.get(f"{self._p}pv:{_enc(user_id)}")
                pipe.hget(f"{self._p}cs:{_enc(user_id)}", conversation_id)
            values = await pipe.execute()
        out: dict[str, tuple[Preview, ConversationSetting]] = {}
        for i, user_id in enumerate(user_ids):
            preview, conv = values[2 * i], values[2 * i + 1]
            out[user_id] = (
                Preview(int(preview)) if preview else Preview.FULL,
                _setting(conversation_id, _text(conv))
                if conv
                else ConversationSetting(conversation_id),
            )
        return out

    # -- the queue ---------------------------------------------------------------------------

    async def enqueue(self, pushes: Sequence[NewPush], min_interval_s: float) -> EnqueueResult:
        if not pushes:
            return EnqueueResult()
        args: list[Any] = [repr(float(min_interval_s))]
        for p in pushes:
            args += [p.user_id, p.device_id, p.conversation_id, str(p.seq), p.kind.value,
                     encode_message(p.message), repr(float(p.event_at)),
                     repr(float(p.not_before))]  # fmt: skip
        queued, repeated, coalesced = await self._run(self._enqueue, *args)
        return EnqueueResult(int(queued), int(repeated), int(coalesced))

    async def cancel(
        self, conversation_id: str, seq: int, user_id: str | None = None, up_to: bool = False
    ) -> int:
        args = (conversation_id, str(seq), user_id or "", "1" if up_to else "0")
        return int(await self._run(self._cancel, *args))

    async def claim(self, now: float, limit: int) -> list[QueuedPush]:
        if limit <= 0:
            return []
        ids = [
            int(i)
            for i in await self._run(
                self._claim, repr(float(now)), limit, repr(now + self._lease_s)
            )
        ]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for push_id in ids:
                pipe.hgetall(f"{self._p}p:{push_id}")
            rows = await pipe.execute()
        pushes = [_push(i, _fields(raw)) for i, raw in zip(ids, rows, strict=True) if raw]
        async with self._redis.pipeline(transaction=False) as pipe:
            for push in pushes:
                pipe.hgetall(f"{self._p}dev:{_enc(push.user_id)}:{_enc(push.device_id)}")
            devices = await pipe.execute()
        return [
            dataclasses.replace(
                push,
                target=_device(push.user_id, push.device_id, _fields(raw)).target if raw else None,
            )
            for push, raw in zip(pushes, devices, strict=True)
        ]

    async def next_due(self) -> float | None:
        first = await self._redis.zrange(f"{self._p}due", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def mark_sent(self, push_ids: Sequence[int], now: float) -> None:
        at = repr(float(now))
        async with self._redis.pipeline(transaction=False) as pipe:
            for push_id in push_ids:
                await self._mark_sent(keys=[], args=[self._p, push_id, at], client=pipe)
            await pipe.execute()

    async def retry(self, push_id: int, not_before: float, error: str) -> None:
        await self._run(self._retry, push_id, repr(float(not_before)), error)

    async def dead_letter(self, push_id: int, error: str, now: float) -> DeadLetterRecord:
        result = await self._run(self._dead_letter, push_id, error, repr(float(now)))
        assert result is not None, f"no push {push_id}"
        dead_id, platform, attempts = result
        push = await self.get_push(push_id)
        assert push is not None
        return DeadLetterRecord(
            int(dead_id), push_id, push.user_id, push.device_id, Platform(_text(platform)),
            push.conversation_id, push.seq, push.kind, int(attempts), error, now,
        )  # fmt: skip

    async def finish(self, push_id: int, state: State, error: str = "") -> None:
        # An `inflight` state gets an expired lease: the next claim queues it again.
        await self._run(self._finish, push_id, state.value, error, "0")

    async def get_push(self, push_id: int) -> QueuedPush | None:
        raw = await self._redis.hgetall(f"{self._p}p:{push_id}")
        return _push(push_id, _fields(raw)) if raw else None

    async def was_sent(
        self, user_id: str, device_id: str, conversation_id: str, seq: int, kind: PushKind
    ) -> bool:
        key = f"{_enc(user_id)}:{_enc(device_id)}:{_enc(conversation_id)}:{seq}:{kind.value}"
        return bool(await self._redis.exists(f"{self._p}s:{key}"))

    async def pushed_since_clear(self, user_id: str, conversation_id: str) -> bool:
        return bool(await self._run(self._pushed_since_clear, user_id, conversation_id))

    async def purge(self, before: float) -> int:
        removed = 0
        while True:
            rows, sent = await self._run(self._purge, repr(float(before)), PURGE_BATCH)
            removed += int(rows) + int(sent)
            if int(rows) < PURGE_BATCH and int(sent) < PURGE_BATCH:
                return removed

    # -- dead letters ------------------------------------------------------------------------

    async def list_dead_letters(
        self, user_id: str | None, before_id: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        key = f"{self._p}dlu:{_enc(user_id)}" if user_id else f"{self._p}dl"
        high = f"({before_id}" if before_id is not None else "+inf"
        ids = await self._redis.zrevrangebyscore(key, high, "-inf", start=0, num=limit)
        out = []
        for member in ids:
            dead_id = int(_text(member))
            raw = await self._redis.hgetall(f"{self._p}dlr:{dead_id}")
            if raw:
                out.append(_dead(dead_id, _fields(raw)))
        return out

    async def replay_dead_letter(self, dead_letter_id: int, now: float) -> DeadLetterRecord | None:
        if not await self._run(self._replay, dead_letter_id, repr(float(now))):
            return None
        raw = await self._redis.hgetall(f"{self._p}dlr:{dead_letter_id}")
        return _dead(dead_letter_id, _fields(raw)) if raw else None
