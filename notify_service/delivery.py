"""The delivery loop: claims queued pushes that are due (not_before <= now), sends each through
the provider of its target's platform with at most `concurrency` calls at once, and records the
outcome: sent (the sent set), a retry at a later not_before (exponential backoff with jitter, at
least the provider's Retry-After), a dead letter after the last try or a FAILED outcome, or the
target removed on GONE. A failing or slow target only holds its own row: every row has its own
not_before, and a call in flight holds one slot of `concurrency` until it has waited
`slow_after_s`; then it is counted apart (at most `4 * concurrency` such slow calls), so a
provider or endpoint that hangs until its timeout delays other pushes by seconds at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chatmesh_common.clock import Clock
from chatmesh_common.logs import fields

from .metrics import FAILURES, PROVIDER_LATENCY, PUSH_LAG, PUSHES
from .providers.base import Outcome, Platform, PushProvider, PushResult
from .store.base import NotifyStore, QueuedPush, State

log = logging.getLogger(__name__)

# The namespace of push ids (uuid5): a fixed, arbitrary UUID, so ids never change.
_PUSH_ID_NAMESPACE = uuid.UUID("6b0e3f4e-2c1a-5d7b-9a43-8f1e0c2d7a15")


def push_id(push: QueuedPush) -> str:
    """The push's id, from what makes it this push (its queue row's unique key), not from the
    store's row number: the same on every try and after a restart, on either store."""
    key = "\n".join(
        (push.user_id, push.device_id, push.conversation_id, str(push.seq), push.kind.value)
    )
    return str(uuid.uuid5(_PUSH_ID_NAMESPACE, key))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Try n (1-based) failed: wait base * 2^(n-1), capped at `max_s`, jittered down to half
    ("equal jitter"), and never less than the provider's Retry-After."""

    base_s: float = 1.0
    max_s: float = 300.0
    max_attempts: int = 6

    def delay(self, attempt: int, retry_after_s: float | None, rand: float) -> float:
        ceiling: float = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        jittered = ceiling / 2 + ceiling / 2 * rand
        if retry_after_s is not None:
            return max(retry_after_s, jittered)
        return jittered


class Delivery:
    def __init__(
        self,
        store: NotifyStore,
        providers: Mapping[Platform, PushProvider],
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        concurrency: int = 16,
        slow_after_s: float = 2.0,
        poll_s: float = 1.0,
        rand: Callable[[], float] = random.random,
        wake: asyncio.Event | None = None,
        retention_s: float | None = None,
        purge_every_s: float = 3600.0,
    ) -> None:
        self._store = store
        self._providers = providers
        self._clock = clock
        self.backoff = backoff or Backoff()
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._rand = rand
        self.wake = wake or asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # Calls past slow_after_s: still running, no longer holding a slot.
        self._slow: set[asyncio.Task[None]] = set()
        self._slow_after_s = slow_after_s
        self._max_slow = 4 * concurrency
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retention_s = retention_s
        self._purge_every_s = purge_every_s
        self._next_purge = 0.0
        # Pushes a provider accepted, recorded by one store call per event-loop turn.
        self._sent: list[int] = []
        self._recording: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Sends every push due now, waiting for each call; how many it tried."""
        tried = 0
        while True:
            pushes = await self._store.claim(self._clock.now(), self._concurrency)
            if not pushes:
                return tried
            await asyncio.gather(*(self._deliver(p) for p in pushes))
            await self._record_sent()
            tried += len(pushes)

    async def _deliver(self, push: QueuedPush) -> None:
        target = push.target
        if target is None:
            await self._store.finish(push.push_id, State.GONE, "no target")
            return
        provider = self._providers.get(target.platform)
        platform = target.platform.value
        if provider is None:
            result = PushResult(Outcome.FAILED, reason="provider not configured")
            latency = 0.0
        else:
            started = self._clock.monotonic()
            try:
                message = dataclasses.replace(push.message, push_id=push_id(push))
                result = await provider.send(target, message)
            except Exception as exc:
                # A provider should classify, not raise; a raise is retried like a timeout.
                log.exception("push provider %s raised", platform)
                result = PushResult(Outcome.RETRY, reason=type(exc).__name__)
            latency = self._clock.monotonic() - started
            PROVIDER_LATENCY.labels(platform).observe(latency)
        now = self._clock.now()
        retry_at: float | None = None
        if result.outcome is Outcome.SENT:
            self._sent_later(push.push_id)
            PUSHES.labels(platform, "sent").inc()
            PUSH_LAG.labels(platform).observe(max(0.0, now - push.event_at))
        elif result.outcome is Outcome.GONE:
            await self._store.remove_target(push.user_id, push.device_id, target.token)
            await self._store.finish(push.push_id, State.GONE, result.reason)
            PUSHES.labels(platform, "gone").inc()
        else:
            reason = result.reason or (f"http {result.status}" if result.status else "unknown")
            FAILURES.labels(platform, reason).inc()
            PUSHES.labels(platform, "failed").inc()
            if result.outcome is Outcome.RETRY and push.attempts < self.backoff.max_attempts:
                delay = self.backoff.delay(push.attempts, result.retry_after_s, self._rand())
                retry_at = now + delay
                await self._store.retry(push.push_id, retry_at, reason)
                PUSHES.labels(platform, "retried").inc()
            else:
                await self._store.dead_letter(push.push_id, reason, now)
                PUSHES.labels(platform, "dead_lettered").inc()
        log.info(
            "push attempt",
            extra=fields(
                push_id=push.push_id, user=push.user_id, device=push.device_id,
                conversation=push.conversation_id, seq=push.seq, kind=push.kind.value,
                provider=platform, attempt=push.attempts, outcome=result.outcome.value,
                status=result.status, reason=result.reason,
                latency_ms=round(latency * 1000, 1), retry_at=retry_at,
            ),
        )  # fmt: skip

    def _sent_later(self, push_id: int) -> None:
        """Queues the `sent` record of a push: the calls that finish in the same turn share
        one store write. Until it is written the push stays `inflight`, never claimed again;
        a crash in between sends it once more after the restart, with the same push id."""
        self._sent.append(push_id)
        if self._recording is None:
            self._recording = asyncio.create_task(self._record_sent())

    async def _record_sent(self) -> None:
        try:
            while self._sent:
                batch, self._sent = self._sent, []
                try:
                    await self._store.mark_sent(batch, self._clock.now())
                except Exception:
                    # Left inflight: the next open (SQLite) or lease (Redis) queues them again.
                    log.exception("recording %d sent pushes failed", len(batch))
        finally:
            if self._recording is asyncio.current_task():
                self._recording = None

    async def _purge(self) -> None:
        """Forgets old finished pushes, at most once per `purge_every_s`."""
        if self._retention_s is None or self._clock.monotonic() < self._next_purge:
            return
        self._next_purge = self._clock.monotonic() + self._purge_every_s
        removed = await self._store.purge(self._clock.now() - self._retention_s)
        if removed:
            log.info("finished pushes forgotten", extra=fields(rows=removed))

    async def _loop(self) -> None:
        # The flag as well as cancel(): asyncio.wait_for (3.11) swallows a cancellation that
        # arrives just as the wake-up event is set.
        while not self._stopping:
            try:
                await self._purge()
                # Cleared before claiming: a wake-up (a new push, a freed slot) that comes while
                # this turn runs is kept for the wait below, never lost.
                self.wake.clear()
                free = self._concurrency - len(self._inflight)
                pushes = await self._store.claim(self._clock.now(), free) if free > 0 else []
                loop = asyncio.get_running_loop()
                for push in pushes:
                    task = asyncio.create_task(self._deliver(push))
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                    loop.call_later(self._slow_after_s, self._demote, task)
                if free <= 0 or len(pushes) == free:
                    # More may be due: wait for a free slot, not for the next due time.
                    await self._wait(self._poll_s)
                    continue
                due = await self._store.next_due()
                wait = self._poll_s
                if due is not None and due > self._clock.now():
                    wait = min(wait, due - self._clock.now())
                # A row due now that the claim left (its device already has a call in flight)
                # waits for a wake-up (that call finishing), never for a busy loop.
                await self._wait(wait)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop failed; continuing")
                await asyncio.sleep(self._poll_s)

    def _demote(self, task: asyncio.Task[None]) -> None:
        """A call still waiting after slow_after_s gives its slot back (within the cap)."""
        if task in self._inflight and len(self._slow) < self._max_slow:
            self._inflight.discard(task)
            self._slow.add(task)
            self.wake.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slow.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push delivery failed", exc_info=task.exception())
        self.wake.set()

    async def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="notify-delivery")

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stops claiming; calls in flight get `grace_s` to finish (the rest are queued again
        on the next open)."""
        if self._task is not None:
            self._stopping = True
            self.wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = self._inflight | self._slow
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._recording is not None:
            await self._recording
        await self._record_sent()
