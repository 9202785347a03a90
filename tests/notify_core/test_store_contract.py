"""The NotifyStore contract, run against every implementation: the embedded SQLite store and the
cluster Redis store (a real redis-server, marker `redis`, a key prefix per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from notify_service.providers.base import Platform, PushMessage, PushTarget
from notify_service.store.base import (
    ConversationSetting,
    Level,
    NewPush,
    NotifyStore,
    Preview,
    PushKind,
    State,
)
from notify_service.store.sqlite import SqliteNotifyStore

pytestmark = pytest.mark.timeout(30)

TARGET = PushTarget(Platform.APNS, "tok-1")
TARGET_2 = PushTarget(Platform.APNS, "tok-2")


# Seconds a claim of the Redis store stays inflight before another claim may take it again.
LEASE_S = 60.0

STORES = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]

StoreFactory = Callable[[], NotifyStore]


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds (unopened) stores on one fresh state: each call sees what the previous ones wrote."""
    if request.param == "sqlite":
        path = str(tmp_path / "notify.db")
        return lambda: SqliteNotifyStore(path)
    from notify_service.store.redis import RedisNotifyStore
    from tests.servers.redis import RedisServer

    redis_server: RedisServer = request.getfixturevalue("redis_server")
    # A prefix per test: tests share one redis-server and never see each other's keys.
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    return lambda: RedisNotifyStore(redis_server.url, prefix=prefix, lease_s=LEASE_S)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[NotifyStore]:
    store = make_store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def push(seq: int, *, device: str = "d1", conversation: str = "c1",
         kind: PushKind = PushKind.MESSAGE, at: float = 100.0) -> NewPush:  # fmt: skip
    message = PushMessage(body=f"m{seq}", data={"seq": str(seq)})
    return NewPush("bob", device, conversation, seq, kind, message, at, at)


async def test_register_moves_a_token_and_replaces_a_target(store: NotifyStore) -> None:
    """One token, one device: registering it elsewhere moves it; a device has one target."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.register_device("carol", "d9", TARGET, 2.0)
    assert await store.list_devices("bob") == []
    assert [d.device_id for d in await store.list_devices("carol")] == ["d9"]
    webpush = PushTarget(Platform.WEBPUSH, "https://p/x", {"auth": "a", "p256dh": "k"})
    await store.register_device("carol", "d9", webpush, 3.0)
    device = await store.get_device("carol", "d9")
    assert device is not None and device.target == webpush
    assert await store.unregister_device("carol", "d9")
    assert not await store.unregister_device("carol", "d9")


async def test_devices_of_several_users_at_once(store: NotifyStore) -> None:
    """One call for a message's recipients: each user's devices in device order, none absent."""
    webpush = PushTarget(Platform.WEBPUSH, "https://p/y", {"auth": "a", "p256dh": "k"})
    await store.register_device("bob", "d2", TARGET, 1.0)
    await store.register_device("bob", "d1", webpush, 2.0)
    other = PushTarget(Platform.WEBPUSH, "https://p/z", {"auth": "a", "p256dh": "k"})
    await store.register_device("carol", "d9", other, 3.0)
    devices = await store.devices_of(["bob", "carol", "dave", "bob"])
    assert sorted(devices) == ["bob", "carol"]
    assert devices["bob"] == await store.list_devices("bob")
    assert [d.device_id for d in devices["bob"]] == ["d1", "d2"]
    assert devices["carol"] == await store.list_devices("carol")
    assert await store.devices_of([]) == {}


async def test_a_claim_carries_each_devices_current_target(store: NotifyStore) -> None:
    """The delivery loop sends to the target a claim returns: the one registered at claim
    time, or None once the device has none (then it ends the push as gone)."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.register_device("bob", "d2", TARGET_2, 1.0)
    await store.enqueue([push(1), push(2, device="d2"), push(3, conversation="c2")], 0)
    webpush = PushTarget(Platform.WEBPUSH, "https://p/w", {"auth": "a", "p256dh": "k"})
    await store.register_device("bob", "d1", webpush, 2.0)
    await store.unregister_device("bob", "d2")
    claimed = await store.claim(100.0, 10)
    assert sorted((p.device_id, p.seq, p.target) for p in claimed) == [
        ("d1", 1, webpush),
        ("d1", 3, webpush),
        ("d2", 2, None),
    ]
    assert (await store.get_push(claimed[0].push_id)) is not None
    assert all(p.state is State.INFLIGHT for p in claimed)


async def test_settings_defaults_and_replacement(store: NotifyStore) -> None:
    """Unset users get FULL and default levels; a default conversation setting is removed."""
    assert (await store.get_settings("bob")).preview is Preview.FULL
    muted = ConversationSetting("c1", Level.ALL, muted_until=50.0)
    await store.update_settings("bob", Preview.ID_ONLY, [muted, ConversationSetting("c2")])
    settings = await store.settings_for(["bob", "carol"], "c1")
    assert settings["bob"] == (Preview.ID_ONLY, muted)
    assert settings["carol"] == (Preview.FULL, ConversationSetting("c1"))
    await store.update_settings("bob", None, [ConversationSetting("c1")])
    assert (await store.get_settings("bob")).conversations == ()
    assert (await store.get_settings("bob")).preview is Preview.ID_ONLY


async def test_a_key_is_queued_once_and_claimed_once(store: NotifyStore) -> None:
    """Enqueueing the same key again (a redelivered event) queues nothing; a claim takes a due
    push once and counts the attempt."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    assert (await store.enqueue([push(1)], 0)).queued == 1
    assert (await store.enqueue([push(1)], 0)).repeated == 1
    assert await store.claim(99.0, 10) == []
    (claimed,) = await store.claim(100.0, 10)
    assert (claimed.seq, claimed.attempts, claimed.state) == (1, 1, State.INFLIGHT)
    assert await store.claim(100.0, 10) == []
    await store.mark_sent([claimed.push_id], 101.0)
    assert await store.was_sent("bob", "d1", "c1", 1, PushKind.MESSAGE)
    assert (await store.enqueue([push(1)], 0)).repeated == 1


async def test_inflight_pushes_are_queued_again_on_open(make_store: StoreFactory) -> None:
    """A push claimed by a process that died is claimable again (SQLite: after the store
    reopens; Redis: once the claim's lease passed, from any replica); never before."""
    first = make_store()
    await first.open()
    await first.register_device("bob", "d1", TARGET, 1.0)
    await first.enqueue([push(1), push(2, conversation="c2")], 0)
    (claimed, _other) = await first.claim(100.0, 10)
    await first.mark_sent([claimed.push_id], 100.0)
    await first.close()
    second = make_store()
    await second.open()
    if not isinstance(second, SqliteNotifyStore):
        # A claim another replica holds is not taken over before its lease passed.
        assert await second.claim(100.0 + LEASE_S - 1, 10) == []
    again = await second.claim(100.0 + LEASE_S, 10)
    assert [p.seq for p in again] == [2]
    assert again[0].attempts == 2
    await second.close()


async def test_newer_push_coalesces_a_queued_one(store: NotifyStore) -> None:
    """A second message of one conversation replaces the queued push, counting both."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1)], 0)
    result = await store.enqueue([push(2, at=105.0)], 0)
    assert (result.queued, result.coalesced) == (1, 1)
    (claimed,) = await store.claim(100.0, 10)
    assert (claimed.seq, claimed.count, claimed.message.data["count"]) == (2, 2, "2")


async def test_device_interval_delays_the_next_push(store: NotifyStore) -> None:
    """After a sent push, the device's next one waits min_interval_s."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1)], 0)
    (first,) = await store.claim(100.0, 1)
    await store.mark_sent([first.push_id], 100.0)
    await store.enqueue([push(2, conversation="c2", at=100.5)], 2.0)
    assert await store.claim(101.0, 1) == []
    assert await store.next_due() == 102.0
    assert [p.seq for p in await store.claim(102.0, 1)] == [2]


async def test_cancel_by_seq_and_by_read_marker(store: NotifyStore) -> None:
    """A delete cancels one seq's queued pushes; a read cancels the reader's up to the marker."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1), push(2, conversation="c2"), push(3, conversation="c3")], 0)
    assert await store.cancel("c1", 1) == 1
    assert await store.cancel("c2", 5, user_id="bob", up_to=True) == 1
    assert await store.cancel("c3", 5, user_id="carol", up_to=True) == 0
    assert [p.seq for p in await store.claim(100.0, 10)] == [3]


async def test_retry_dead_letter_and_replay(store: NotifyStore) -> None:
    """A retry waits for its not_before; a dead letter is listed newest first and replayed."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1), push(2, conversation="c2")], 0)
    first, second = await store.claim(100.0, 10)
    await store.retry(first.push_id, 110.0, "http 503")
    assert await store.claim(109.0, 10) == []
    (retried,) = await store.claim(110.0, 10)
    assert (retried.attempts, retried.last_error) == (2, "http 503")
    a = await store.dead_letter(retried.push_id, "http 500", 111.0)
    b = await store.dead_letter(second.push_id, "too large", 112.0)
    listed = await store.list_dead_letters(None, None, 10)
    assert [d.dead_letter_id for d in listed] == [b.dead_letter_id, a.dead_letter_id]
    assert (a.attempts, a.platform, a.last_error) == (2, Platform.APNS, "http 500")
    assert [
        d.dead_letter_id for d in await store.list_dead_letters(None, b.dead_letter_id, 10)
    ] == [a.dead_letter_id]
    replayed = await store.replay_dead_letter(a.dead_letter_id, 120.0)
    assert replayed is not None and not replayed.pending
    (again,) = await store.claim(120.0, 10)
    assert (again.push_id, again.attempts) == (retried.push_id, 1)
    assert await store.replay_dead_letter(9999, 120.0) is None


async def test_removing_a_gone_target_ends_its_queued_pushes(store: NotifyStore) -> None:
    """remove_target only removes the token it names; the device's queue ends as gone."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1), push(2, conversation="c2")], 0)
    assert not await store.remove_target("bob", "d1", "another-token")
    assert await store.remove_target("bob", "d1", "tok-1")
    assert await store.claim(100.0, 10) == []


async def test_pushed_since_clear(store: NotifyStore) -> None:
    """Only a message push after the last clear leaves something to clear."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    assert not await store.pushed_since_clear("bob", "c1")
    await store.enqueue([push(1)], 0)
    assert await store.pushed_since_clear("bob", "c1")
    await store.enqueue([push(1, kind=PushKind.CLEAR)], 0)
    assert not await store.pushed_since_clear("bob", "c1")


async def test_purge_forgets_finished_pushes_but_not_queued_ones(store: NotifyStore) -> None:
    """Sent and cancelled pushes of old events are forgotten; queued ones and dead letters stay."""
    await store.register_device("bob", "d1", TARGET, 1.0)
    await store.enqueue([push(1, at=10.0), push(2, conversation="c2", at=10.0)], 0)
    await store.enqueue([push(3, conversation="c3", at=10.0)], 0)
    first, second, third = await store.claim(10.0, 10)
    await store.mark_sent([first.push_id], 10.0)
    await store.dead_letter(second.push_id, "http 500", 10.0)
    await store.retry(third.push_id, 500.0, "http 503")
    assert await store.purge(100.0) == 2
    assert await store.get_push(first.push_id) is None
    assert not await store.was_sent("bob", "d1", "c1", 1, PushKind.MESSAGE)
    assert len(await store.list_dead_letters(None, None, 10)) == 1
    assert [p.seq for p in await store.claim(500.0, 10)] == [3]


async def test_replicas_claim_each_push_once(make_store: StoreFactory) -> None:
    """Stores on one state claiming at once (replicas on one Redis) never claim a push twice."""
    stores = [make_store() for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        await stores[0].register_device("bob", "d1", TARGET, 1.0)
        await stores[0].enqueue([push(i, conversation=f"c{i}") for i in range(1, 41)], 0)
        batches = await asyncio.gather(*(s.claim(100.0, 3) for s in stores for _ in range(5)))
        seqs = [p.seq for batch in batches for p in batch]
        assert sorted(seqs) == list(range(1, 41))
    finally:
        for s in stores:
            await s.close()
