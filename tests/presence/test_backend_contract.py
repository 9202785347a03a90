"""The presence backend contract, run against the in-memory and the Redis backend alike.

Time is passed in, so expiry is tested without sleeping, on a real Redis too.
"""

from __future__ import annotations

import pytest

from presence_service.backends.base import PresenceBackend, Status

pytestmark = pytest.mark.timeout(20)

T0 = 1_700_000_000.0
TTL = 30.0


async def online(backend: PresenceBackend, user: str) -> bool:
    (record,) = await backend.get([user])
    return record.online


async def test_first_heartbeat_turns_user_online_once(backend: PresenceBackend) -> None:
    """Only the heartbeat that flips a user online reports the transition."""
    first = await backend.heartbeat("alice", "phone", T0, TTL)
    again = await backend.heartbeat("alice", "phone", T0 + 1, TTL)
    other = await backend.heartbeat("alice", "laptop", T0 + 2, TTL)
    assert first.turned_online is not None and first.turned_online.online
    assert again.turned_online is None and other.turned_online is None
    assert await online(backend, "alice")


async def test_online_while_either_device_is_connected(backend: PresenceBackend) -> None:
    """Two devices: online until both are gone; last_seen is when the last one left."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    await backend.heartbeat("alice", "laptop", T0, TTL)
    assert await backend.disconnect("alice", "phone", T0 + 5) is None
    assert await online(backend, "alice")
    gone = await backend.disconnect("alice", "laptop", T0 + 7)
    assert gone is not None and not gone.online
    (record,) = await backend.get(["alice"])
    assert not record.online
    assert record.last_seen == pytest.approx(T0 + 7)


async def test_vanished_device_expires_after_ttl(backend: PresenceBackend) -> None:
    """A device that stops heartbeating turns its user offline when its TTL passes; last_seen
    is its last heartbeat."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    await backend.heartbeat("alice", "phone", T0 + 10, TTL)
    assert await backend.expire(T0 + 10 + TTL - 0.5, TTL, 100) == []
    assert await online(backend, "alice")
    changed = await backend.expire(T0 + 10 + TTL + 0.5, TTL, 100)
    assert [r.user_id for r in changed] == ["alice"]
    (record,) = await backend.get(["alice"])
    assert not record.online
    assert record.last_seen == pytest.approx(T0 + 10)


async def test_expiry_is_reported_once(backend: PresenceBackend) -> None:
    """A second sweep finds nothing: each transition is reported exactly once."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    assert len(await backend.expire(T0 + TTL + 1, TTL, 100)) == 1
    assert await backend.expire(T0 + TTL + 2, TTL, 100) == []


async def test_live_device_keeps_user_online_when_another_expires(
    backend: PresenceBackend,
) -> None:
    """An expired device does not take its user offline while another device heartbeats."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    await backend.heartbeat("alice", "laptop", T0 + 20, TTL)
    assert await backend.expire(T0 + TTL + 1, TTL, 100) == []
    assert await online(backend, "alice")
    # The expired phone is gone: closing the laptop now takes alice offline.
    assert await backend.disconnect("alice", "laptop", T0 + TTL + 2) is not None


async def test_heartbeat_after_expiry_turns_online_again(backend: PresenceBackend) -> None:
    """A device that comes back after expiring is online again, and says so once."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    await backend.expire(T0 + TTL + 1, TTL, 100)
    back = await backend.heartbeat("alice", "phone", T0 + TTL + 2, TTL)
    assert back.turned_online is not None
    assert await online(backend, "alice")


async def test_expire_respects_limit(backend: PresenceBackend) -> None:
    """One sweep handles at most `limit` users; the next picks up the rest."""
    for i in range(5):
        await backend.heartbeat(f"u{i}", "d", T0, TTL)
    first = await backend.expire(T0 + TTL + 1, TTL, 3)
    rest = await backend.expire(T0 + TTL + 1, TTL, 3)
    assert len(first) == 3 and len(rest) == 2


async def test_unknown_user_is_offline_and_never_seen(backend: PresenceBackend) -> None:
    """A user who never connected is offline with no last_seen."""
    (record,) = await backend.get(["nobody"])
    assert not record.online and record.last_seen is None
    assert record.status == Status.AVAILABLE


async def test_set_status_returns_before_and_after(backend: PresenceBackend) -> None:
    """Status and text are stored and reported with the previous state."""
    before, after = await backend.set_status("alice", Status.AWAY, "lunch", T0)
    assert before.status == Status.AVAILABLE and before.custom_text == ""
    assert after.status == Status.AWAY and after.custom_text == "lunch"
    (record,) = await backend.get(["alice"])
    assert record.status == Status.AWAY and record.custom_text == "lunch"


async def test_invisible_freezes_last_seen(backend: PresenceBackend) -> None:
    """Going invisible sets last_seen to that moment; leaving later does not move it."""
    await backend.heartbeat("alice", "phone", T0, TTL)
    await backend.set_status("alice", Status.INVISIBLE, "", T0 + 3)
    await backend.disconnect("alice", "phone", T0 + 9)
    (record,) = await backend.get(["alice"])
    assert record.last_seen == pytest.approx(T0 + 3)
    assert record.status == Status.INVISIBLE


async def test_known_status_restores_only_a_lost_status(backend: PresenceBackend) -> None:
    """A heartbeat's known status fills a missing status but never overrides a stored one."""
    restored = await backend.heartbeat("bob", "phone", T0, TTL, Status.INVISIBLE)
    assert restored.status == Status.INVISIBLE
    await backend.set_status("bob", Status.AWAY, "", T0 + 1)
    kept = await backend.heartbeat("bob", "phone", T0 + 2, TTL, Status.INVISIBLE)
    assert kept.status == Status.AWAY
