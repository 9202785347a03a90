"""The rules of presence and typing: who is online, what each viewer may see, where signals go.

`Presence` sits between the servicer (protos, status codes) and a `PresenceBackend` (state with
deadlines). It owns:

* connect / heartbeat / disconnect of a socket, and the periodic sweep that turns a user whose
  devices vanished offline within one TTL plus one sweep interval;
* the view a viewer gets of a user (`view_of`): invisible users and users the viewer may not see
  (no shared conversation, or the subject blocked the viewer) look offline with nothing else;
* change events on the bus (`chatmesh.presence.<user>`), filtered again for each watcher when
  delivered;
* typing signals: checked when sent (membership, blocks, invisible, rate limit), then published
  as a `ConversationEvent` (seq 0, `typing_changed`) on each recipient's own subject
  (`chatmesh_common.subjects.user_subject`), which every event stream of that user
  (chat_service's EventService.SubscribeEvents) follows. So typing reaches every online member
  allowed to see it, with no presence subscription.

Nothing here is durable and nothing touches the message store.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from chatmesh.events.v1 import events_pb2

from chatmesh_common.auth import Identity
from chatmesh_common.bus import Bus, Subscription
from chatmesh_common.clock import Clock, SystemClock
from chatmesh_common.limits import LIMITS, MAX_TYPING_TTL_S, Limits
from chatmesh_common.ratelimit import RateLimiter
from chatmesh_common.rpc import RpcError as PresenceError
from chatmesh_common.rpc import check_id, invalid, timestamp
from chatmesh_common.subjects import presence_subject, user_subject

from .access import AccessClient, VisibilityCache
from .backends.base import BackendUnavailable, PresenceBackend, Status, UserRecord

log = logging.getLogger(__name__)

# Events queued for one watch stream before it falls back to a fresh snapshot.
WATCH_QUEUE = 1024
SWEEP_BATCH = 1000


def typing_event(
    conversation_id: str, user_id: str, typing: bool, occurred_at: float, expires_at: float
) -> bytes:
    """The bus payload of a typing signal: a live ConversationEvent (seq 0) with typing_changed."""
    event = events_pb2.ConversationEvent(
        conversation_id=conversation_id,
        occurred_at=timestamp(occurred_at),
        actor_id=user_id,
        typing_changed=events_pb2.TypingChanged(
            user_id=user_id, typing=typing, expires_at=timestamp(expires_at)
        ),
    )
    return event.SerializeToString()


def _check_user_ids(user_ids: Sequence[str], limits: Limits) -> list[str]:
    if len(user_ids) > limits.max_presence_users:
        raise invalid(f"user_ids must hold at most {limits.max_presence_users} ids")
    for user_id in user_ids:
        check_id("user_ids", user_id, limits.max_id_chars)
    return list(dict.fromkeys(user_ids))


class State(enum.IntEnum):
    """What others see; values match chatmesh.presence.v1.PresenceState."""

    ONLINE = 1
    AWAY = 2
    OFFLINE = 3


@dataclass(frozen=True, slots=True)
class View:
    """One user's presence as one viewer may see it."""

    user_id: str
    state: State
    last_seen: float | None = None
    custom_text: str = ""
    # The chosen status, only in a user's view of themselves.
    status: Status | None = None


def view_of(record: UserRecord, viewer: str, visible: bool) -> View:
    """What `viewer` sees of `record`: everything of themselves, nothing of whom they may not see,
    and an invisible user as offline at the moment they went invisible."""
    if record.user_id == viewer:
        if not record.online:
            return View(record.user_id, State.OFFLINE, record.last_seen, record.custom_text,
                        record.status)  # fmt: skip
        state = State.AWAY if record.status == Status.AWAY else State.ONLINE
        return View(record.user_id, state, None, record.custom_text, record.status)
    if not visible:
        return View(record.user_id, State.OFFLINE)
    if record.status == Status.INVISIBLE:
        return View(record.user_id, State.OFFLINE, record.last_seen)
    if not record.online:
        return View(record.user_id, State.OFFLINE, record.last_seen, record.custom_text)
    state = State.AWAY if record.status == Status.AWAY else State.ONLINE
    return View(record.user_id, state, None, record.custom_text)


def _encode_record(record: UserRecord) -> bytes:
    return json.dumps(
        [record.user_id, record.online, int(record.status), record.custom_text, record.last_seen]
    ).encode()


def _decode_record(payload: bytes) -> UserRecord:
    user_id, online, status, text, last_seen = json.loads(payload)
    return UserRecord(user_id, bool(online), Status(status), text, last_seen)


@dataclass(frozen=True)
class PresenceSettings:
    ttl_s: float = 30.0
    typing_ttl_s: float = 6.0
    typing_per_second: float = LIMITS.typing_per_second
    sweep_interval_s: float = 1.0
    access_cache_s: float = 2.0

    @property
    def heartbeat_interval_s(self) -> float:
        # Three heartbeats per TTL: one lost heartbeat never turns a live device offline.
        return self.ttl_s / 3


def connection_key(identity: Identity, connection_id: str) -> str:
    return f"{identity.device_id}\x1f{connection_id}"


class Presence:
    def __init__(
        self,
        backend: PresenceBackend,
        bus: Bus,
        access: AccessClient,
        settings: PresenceSettings | None = None,
        clock: Clock | None = None,
        limits: Limits = LIMITS,
    ) -> None:
        self._backend = backend
        self._limits = limits
        self._bus = bus
        self._access = access
        self.settings = settings or PresenceSettings()
        if self.settings.typing_ttl_s > MAX_TYPING_TTL_S:
            raise ValueError(f"typing TTL must be at most {MAX_TYPING_TTL_S} s (SPEC 8)")
        self._clock = clock or SystemClock()
        self._visibility = VisibilityCache(access, self._clock, self.settings.access_cache_s)
        # A bucket per (user, device): `typing_per_second` signals a second, bursts as many
        # (at least one, so a rate below 1/s still lets a signal through now and then).
        rate = self.settings.typing_per_second
        self._typing_limiter = RateLimiter(rate, max(1.0, rate), self._clock.monotonic)
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the sweep that expires vanished devices."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="presence-sweep")

    async def stop(self) -> None:
        """Ends watch streams and the sweep."""
        self._closing.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_loop(self) -> None:
        # Ends on `_closing` as well as on cancellation: redis-py can turn a cancellation that
        # lands mid-call into a connection error, which this loop would log and outlive.
        while not self._closing.is_set():
            try:
                await self.sweep_once()
            except BackendUnavailable as exc:
                # Redis down: nothing to expire that heartbeats will not rebuild; try again.
                log.warning("presence sweep skipped: %s", exc)
            except Exception:
                log.exception("presence sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.settings.sweep_interval_s)

    async def sweep_once(self) -> int:
        """Turns offline every user whose last connection's TTL passed; how many turned."""
        turned = 0
        while True:
            changed = await self._backend.expire(
                self._clock.now(), self.settings.ttl_s, SWEEP_BATCH
            )
            for record in changed:
                await self._publish(record)
            turned += len(changed)
            if len(changed) < SWEEP_BATCH:
                return turned

    async def _publish(self, record: UserRecord) -> None:
        # Best effort: the state is in the backend; a lost event only delays a watcher's view
        # until the next change or snapshot.
        try:
            await self._bus.publish(presence_subject(record.user_id), _encode_record(record))
        except Exception:
            log.exception("presence event for %s not published", record.user_id)

    # -- devices -----------------------------------------------------------------------------

    async def connect(self, who: Identity, connection_id: str) -> View:
        await self.heartbeat(who, connection_id, None)
        (record,) = await self._backend.get([who.user_id])
        return view_of(record, who.user_id, True)

    async def heartbeat(
        self, who: Identity, connection_id: str, known_status: Status | None
    ) -> Status:
        if len(connection_id) > self._limits.max_id_chars:
            raise invalid(f"connection_id must be at most {self._limits.max_id_chars} characters")
        result = await self._backend.heartbeat(
            who.user_id,
            connection_key(who, connection_id),
            self._clock.now(),
            self.settings.ttl_s,
            known_status,
        )
        if result.turned_online is not None:
            await self._publish(result.turned_online)
        return result.status

    async def disconnect(self, who: Identity, connection_id: str) -> None:
        if len(connection_id) > self._limits.max_id_chars:
            raise invalid(f"connection_id must be at most {self._limits.max_id_chars} characters")
        record = await self._backend.disconnect(
            who.user_id, connection_key(who, connection_id), self._clock.now()
        )
        if record is not None:
            await self._publish(record)

    async def set_status(self, who: Identity, status: Status | None, custom_text: str) -> View:
        if status is None:
            raise invalid("status is required")
        most = self._limits.max_custom_text_chars
        if len(custom_text) > most:
            raise invalid(f"custom_text must be at most {most} characters")
        if custom_text:
            # Text others read: a suspended user may clear theirs, not set one.
            await self._access.require_active(who.user_id)
        before, after = await self._backend.set_status(
            who.user_id, status, custom_text, self._clock.now()
        )
        if before != after:
            await self._publish(after)
        return view_of(after, who.user_id, True)

    # -- reading -----------------------------------------------------------------------------

    async def _visible(self, viewer: Identity, subjects: Sequence[str]) -> set[str]:
        return await self._visibility.visible(viewer.user_id, subjects)

    async def get(self, viewer: Identity, user_ids: Sequence[str]) -> list[View]:
        wanted = _check_user_ids(user_ids, self._limits)
        visible = await self._visible(viewer, wanted)
        by_id = {r.user_id: r for r in await self._backend.get(wanted)}
        return [view_of(by_id[u], viewer.user_id, u in visible) for u in user_ids]

    async def online_users(self, user_ids: Sequence[str]) -> list[str]:
        """Which of `user_ids` have an online device now, whatever their status (invisible users
        are online too): for services deciding whether to reach a user another way (push)."""
        wanted = _check_user_ids(user_ids, self._limits)
        online = {r.user_id for r in await self._backend.get(wanted) if r.online}
        return [u for u in wanted if u in online]

    async def watch(self, viewer: Identity, user_ids: Sequence[str]) -> AsyncIterator[View]:
        """A snapshot of `user_ids`, then their changes (typing goes to the event streams).

        Each change is filtered for this viewer when it is delivered, and sent only when the
        viewer's view of that user changed. A watcher too slow for its queue gets a fresh
        snapshot instead of the events it missed (presence is state, not a log).
        """
        wanted = _check_user_ids(user_ids, self._limits)
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(WATCH_QUEUE)
        overflowed = False

        def on_message(subject: str, payload: bytes) -> None:
            nonlocal overflowed
            try:
                queue.put_nowait((subject, payload))
            except asyncio.QueueFull:
                overflowed = True

        subscriptions: list[Subscription] = []
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            # Subscribe first, then read the snapshot: a change in between is not lost.
            for subject in (presence_subject(u) for u in wanted):
                subscriptions.append(await self._bus.subscribe(subject, on_message))
            sent: dict[str, View] = {}
            snapshot = await self._snapshot(viewer, wanted)
            for view in snapshot:
                sent[view.user_id] = view
                yield view
            while not self._closing.is_set():
                if overflowed:
                    overflowed = False
                    while not queue.empty():
                        queue.get_nowait()
                    for view in await self._snapshot(viewer, wanted):
                        if sent.get(view.user_id) != view:
                            sent[view.user_id] = view
                            yield view
                    continue
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, closing], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                _subject, payload = getter.result()
                record = _decode_record(payload)
                try:
                    visible = await self._visible(viewer, [record.user_id])
                except PresenceError as exc:
                    if exc.code == grpc.StatusCode.UNAUTHENTICATED:
                        raise
                    # Fail closed: without an answer, deliver nothing.
                    log.warning("presence event for a watcher dropped: %s", exc.message)
                    continue
                view = view_of(record, viewer.user_id, record.user_id in visible)
                if sent.get(record.user_id) != view:
                    sent[record.user_id] = view
                    yield view
        finally:
            closing.cancel()
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _snapshot(self, viewer: Identity, user_ids: list[str]) -> list[View]:
        if not user_ids:
            return []
        visible = await self._visible(viewer, user_ids)
        records = await self._backend.get(user_ids)
        return [view_of(r, viewer.user_id, r.user_id in visible) for r in records]

    # -- typing ------------------------------------------------------------------------------

    async def send_typing(self, who: Identity, conversation_id: str, typing: bool) -> float:
        """Sends a typing signal to the members allowed to get it; returns when it expires.

        Each recipient gets a `ConversationEvent` (seq 0, never stored) with `typing_changed` on
        their own subject, so it reaches every event stream of theirs.
        """
        check_id("conversation_id", conversation_id, self._limits.max_id_chars)
        wait_s = self._typing_limiter.acquire((who.user_id, who.device_id))
        if wait_s > 0:
            raise PresenceError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"typing signals are limited to {self.settings.typing_per_second:g} per second "
                "per device",
                retry_after_s=wait_s,
            )
        recipients = await self._access.typing_audience(who.user_id, conversation_id)
        now = self._clock.now()
        expires_at = now + self.settings.typing_ttl_s
        (record,) = await self._backend.get([who.user_id])
        if record.status == Status.INVISIBLE:
            # Invisible users type unseen; the caller learns nothing different.
            return expires_at
        payload = typing_event(conversation_id, who.user_id, typing, now, expires_at)
        for recipient in recipients:
            try:
                await self._bus.publish(user_subject(recipient), payload)
            except Exception:
                log.exception("typing signal to %s not published", recipient)
        return expires_at
