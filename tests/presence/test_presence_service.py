"""SPEC guarantees 5 and 8 through the gRPC API: online state, last seen, invisibility, blocks,
typing audiences and limits. Chat, AccessService and presence share one port, as in `chatmesh dev`;
presence runs on a manual clock, so TTLs pass without sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import grpc
import pytest
from chatmesh.events.v1 import events_pb2
from chatmesh.presence.v1 import presence_service_pb2 as ppb

from chatmesh_common.subjects import user_subject
from presence_service.backends.memory import MemoryPresenceBackend
from tests.chat.support import expect_code

from .support import TTL_S, PresenceHarness, next_typing

pytestmark = pytest.mark.timeout(30)

ONLINE = ppb.PRESENCE_STATE_ONLINE
AWAY = ppb.PRESENCE_STATE_AWAY
OFFLINE = ppb.PRESENCE_STATE_OFFLINE


async def test_online_while_either_device_is_connected(system: PresenceHarness) -> None:
    """Two devices of one user: online while either is connected, offline when both are gone,
    and last_seen is set."""
    phone, laptop = system.client("alice", "phone"), system.client("alice", "laptop")
    bob = system.client("bob")
    await phone.group(bob)
    await phone.connect()
    await laptop.connect()
    await phone.disconnect()
    assert (await bob.state_of(phone)).state == ONLINE
    system.clock.advance(4)
    await laptop.disconnect()
    seen = await bob.state_of(phone)
    assert seen.state == OFFLINE
    assert seen.last_seen.ToNanoseconds() == pytest.approx(system.clock.now() * 1e9)


async def test_device_killed_without_close_turns_offline_within_ttl(
    system: PresenceHarness,
) -> None:
    """A device that stops heartbeating (no Disconnect) is offline once its TTL has passed."""
    alice, bob = system.client("alice", "phone"), system.client("bob")
    await alice.group(bob)
    await alice.connect()
    system.clock.advance(10)
    await alice.heartbeat()
    last_beat = system.clock.now()
    system.clock.advance(TTL_S - 1)
    await system.sweep()
    assert (await bob.state_of(alice)).state == ONLINE
    system.clock.advance(1.5)
    assert await system.sweep() == 1
    seen = await bob.state_of(alice)
    assert seen.state == OFFLINE
    assert seen.last_seen.ToNanoseconds() == pytest.approx(last_beat * 1e9)


async def test_watchers_get_online_and_offline_changes(system: PresenceHarness) -> None:
    """A member of a shared conversation watching a user sees it come online and leave."""
    alice, bob = system.client("alice"), system.client("bob")
    await alice.group(bob)
    watcher = await bob.watch(alice)
    assert watcher.snapshot["alice"].state == OFFLINE
    await alice.connect()
    assert (await watcher.next_presence()).state == ONLINE
    await alice.set_status(ppb.USER_STATUS_AWAY, "lunch")
    away = await watcher.next_presence()
    assert (away.state, away.custom_text) == (AWAY, "lunch")
    system.clock.advance(TTL_S + 1)
    await system.sweep()
    assert (await watcher.next_presence()).state == OFFLINE
    watcher.close()


async def test_invisible_user_looks_offline_to_others(system: PresenceHarness) -> None:
    """Invisible: others see offline at the moment it went invisible; the user sees the truth."""
    alice, bob = system.client("alice"), system.client("bob")
    await alice.group(bob)
    await alice.connect()
    watcher = await bob.watch(alice)
    assert watcher.snapshot["alice"].state == ONLINE
    system.clock.advance(3)
    went_invisible = system.clock.now()
    mine = await alice.set_status(ppb.USER_STATUS_INVISIBLE, "secret")
    assert (mine.state, mine.status) == (ONLINE, ppb.USER_STATUS_INVISIBLE)
    event = await watcher.next_presence()
    assert event.state == OFFLINE and event.custom_text == ""
    assert event.last_seen.ToNanoseconds() == pytest.approx(went_invisible * 1e9)
    system.clock.advance(5)
    await alice.heartbeat()
    seen = await bob.state_of(alice)
    assert seen.state == OFFLINE and seen.status == ppb.USER_STATUS_UNSPECIFIED
    assert seen.last_seen.ToNanoseconds() == pytest.approx(went_invisible * 1e9)
    watcher.close()


async def test_user_without_shared_conversation_sees_nothing(system: PresenceHarness) -> None:
    """No shared conversation: offline with no last_seen, the same as never seen."""
    alice, stranger = system.client("alice"), system.client("stranger")
    await alice.connect()
    seen = await stranger.state_of(alice)
    assert seen.state == OFFLINE and not seen.HasField("last_seen")


async def test_blocked_user_gets_no_presence_of_the_blocker(system: PresenceHarness) -> None:
    """A user the subject blocked sees it offline and gets none of its changes."""
    alice, bob, carol = system.client("alice"), system.client("bob"), system.client("carol")
    await alice.group(bob, carol)
    await alice.block(bob)
    watcher = await bob.watch(alice, carol)
    await alice.connect()
    await alice.set_status(ppb.USER_STATUS_AWAY, "gone fishing")
    await carol.connect()  # a sentinel: bob's next event must be carol's, not alice's
    event = await watcher.next_presence()
    assert (event.user_id, event.state) == ("carol", ONLINE)
    seen = await bob.state_of(alice)
    assert seen.state == OFFLINE and seen.custom_text == "" and not seen.HasField("last_seen")
    assert (await carol.state_of(alice)).state == AWAY
    watcher.close()


async def test_members_get_typing_in_their_event_stream_within_6s(
    system: PresenceHarness,
) -> None:
    """Members other than the typer get the signal in every event stream of theirs, with no
    presence subscription: a live ConversationEvent (seq 0) whose expiry is at most 6 s away."""
    alice, bob, bob_laptop = (
        system.client("alice"),
        system.client("bob"),
        system.client("bob", "laptop"),
    )
    cid = await alice.group(bob)
    phone_events, laptop_events = await bob.subscribe(), await bob_laptop.subscribe()
    sent = await alice.typing(cid)
    for reader in (phone_events, laptop_events):
        event = await next_typing(reader)
        assert (event.conversation_id, event.actor_id) == (cid, "alice")
        assert (event.typing_changed.user_id, event.typing_changed.typing) == ("alice", True)
        assert event.occurred_at.ToNanoseconds() == pytest.approx(system.clock.now() * 1e9)
        expires = event.typing_changed.expires_at.ToNanoseconds() / 1e9
        assert system.clock.now() < expires <= system.clock.now() + 6.0
        assert sent.expires_at == event.typing_changed.expires_at
    await alice.typing(cid, typing=False)
    stopped = await next_typing(phone_events)
    assert (stopped.typing_changed.user_id, stopped.typing_changed.typing) == ("alice", False)
    phone_events.close()
    laptop_events.close()


async def test_typing_is_published_on_each_recipients_user_subject(
    system: PresenceHarness,
) -> None:
    """The bus payload is a ConversationEvent on `user_subject(recipient)`, never the typer's."""
    alice, bob = system.client("alice"), system.client("bob")
    cid = await alice.group(bob)
    got: dict[str, list[bytes]] = {"alice": [], "bob": []}

    def collect(into: list[bytes]) -> Callable[[str, bytes], None]:
        return lambda _subject, payload: into.append(payload)

    subs = [await system.bus.subscribe(user_subject(u), collect(got[u])) for u in got]
    await alice.typing(cid)
    for sub in subs:
        await sub.unsubscribe()
    assert got["alice"] == []
    (payload,) = got["bob"]
    event = events_pb2.ConversationEvent.FromString(payload)
    assert (event.conversation_id, event.seq, event.actor_id) == (cid, 0, "alice")
    assert event.typing_changed.user_id == "alice" and event.typing_changed.typing


async def test_watch_no_longer_carries_typing(system: PresenceHarness) -> None:
    """A watcher of presence gets presence only; the typing goes to the event stream."""
    alice, bob, carol = system.client("alice"), system.client("bob"), system.client("carol")
    cid = await alice.group(bob, carol)
    watcher = await bob.watch(carol)
    events = await bob.subscribe()
    await alice.typing(cid)
    assert (await next_typing(events)).typing_changed.user_id == "alice"
    await carol.connect()  # the watcher's next item must be carol's presence, not typing
    item = await watcher.next()
    assert item.WhichOneof("event") == "presence"
    assert (item.presence.user_id, item.presence.state) == ("carol", ONLINE)
    watcher.close()
    events.close()


async def test_blocked_member_gets_no_typing_of_the_blocker(system: PresenceHarness) -> None:
    """In a group with both, the blocked member gets none of the blocker's typing, and the
    blocker none of the blocked member's."""
    alice, bob, carol = system.client("alice"), system.client("bob"), system.client("carol")
    cid = await alice.group(bob, carol)
    await alice.block(bob)
    bob_events, alice_events = await bob.subscribe(), await alice.subscribe()
    await alice.typing(cid)
    await bob.typing(cid)
    await carol.typing(cid)  # the sentinel
    assert (await next_typing(bob_events)).actor_id == "carol"
    assert (await next_typing(alice_events)).actor_id == "carol"
    bob_events.close()
    alice_events.close()


async def test_non_member_gets_no_typing_and_cannot_send_it(system: PresenceHarness) -> None:
    """Typing goes to members only; a non-member's signal is PERMISSION_DENIED."""
    alice, bob, eve = system.client("alice"), system.client("bob"), system.client("eve")
    cid = await alice.group(bob)
    other = await alice.group(eve)
    events = await eve.subscribe()
    await alice.typing(cid)
    await alice.typing(other)  # the sentinel
    assert (await next_typing(events)).conversation_id == other
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, eve.typing(cid))
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, eve.typing("no-such-conversation"))
    events.close()


async def test_invisible_user_typing_reaches_nobody(system: PresenceHarness) -> None:
    """While invisible a user's typing is not delivered."""
    alice, bob, carol = system.client("alice"), system.client("bob"), system.client("carol")
    cid = await alice.group(bob, carol)
    await alice.set_status(ppb.USER_STATUS_INVISIBLE)
    events = await bob.subscribe()
    await alice.typing(cid)
    await carol.typing(cid)
    assert (await next_typing(events)).actor_id == "carol"
    events.close()


async def test_typing_is_limited_to_two_per_second_per_device(system: PresenceHarness) -> None:
    """The third signal within a second is RESOURCE_EXHAUSTED with a retry-after; another
    device of the same user has its own budget; a second later it is allowed again."""
    phone, laptop, bob = (
        system.client("alice", "phone"),
        system.client("alice", "laptop"),
        (system.client("bob")),
    )
    cid = await phone.group(bob)
    await phone.typing(cid)
    await phone.typing(cid)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await phone.typing(cid)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    metadata = cast(Iterable[tuple[str, str]], refused.value.trailing_metadata() or ())
    assert int(dict(metadata)["retry-after-ms"]) > 0
    await laptop.typing(cid)
    system.clock.advance(1.0)
    await phone.typing(cid)


async def test_calls_without_a_token_are_unauthenticated(system: PresenceHarness) -> None:
    """Every presence call verifies the caller's token."""
    alice = system.client("alice")
    await expect_code(
        grpc.StatusCode.UNAUTHENTICATED,
        alice.presence.GetPresence(ppb.GetPresenceRequest(user_ids=["bob"])),
    )


async def test_a_refused_service_credential_fails_closed(tmp_path: Path) -> None:
    """When chat_service does not accept presence's service token, presence shows nothing of
    others and sends no typing: UNAVAILABLE, the access check named."""
    system = PresenceHarness(
        tmp_path / "chat-data",
        MemoryPresenceBackend(),
        access_secret="a-service-secret-chat-service-does-not-know",
    )
    await system.start()
    try:
        alice, bob = system.client("alice"), system.client("bob")
        cid = await alice.group(bob)
        await alice.connect()
        details = await expect_code(grpc.StatusCode.UNAVAILABLE, bob.state_of(alice))
        assert "access check" in details
        await expect_code(grpc.StatusCode.UNAVAILABLE, bob.typing(cid))
        assert (await alice.state_of(alice)).state == ONLINE
    finally:
        await system.stop()


async def test_bad_input_names_the_field(system: PresenceHarness) -> None:
    """Too many ids, a missing status or an overlong text are INVALID_ARGUMENT."""
    alice = system.client("alice")
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await alice.presence.GetPresence(
            ppb.GetPresenceRequest(user_ids=[f"u{i}" for i in range(501)]), metadata=alice.md
        )
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_ids" in (too_many.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as no_status:
        await alice.set_status(ppb.USER_STATUS_UNSPECIFIED)
    assert "status" in (no_status.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as long_text:
        await alice.set_status(ppb.USER_STATUS_AWAY, "x" * 101)
    assert "custom_text" in (long_text.value.details() or "")
