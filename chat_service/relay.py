"""The relay: every committed event reaches the durable event stream, even if its writer died.

The log is the outbox. Each write that takes a seq also records, in the same transaction, an
outbox entry for its conversation (`ChatStore.pending_outbox`: from_seq..up_to_seq not yet
relayed). The relay publishes those events from the log with `Bus.publish_durable` and then
clears the entry (`ChatStore.clear_outbox`, which keeps whatever was written meanwhile):

* fast path: the event sink (`chat_service.events`) kicks the relay right after the durable
  write, with the events it just committed. When this relay knows that everything before them
  was relayed (it cleared up to there itself: the relayed mark only ever rises) it publishes
  them as they are and clears them (one store write); otherwise it reads that conversation's
  entry and publishes it from the log, using the events it was given where they fit;
* sweep: on start, every pending entry; then every `sweep_interval_s`, each entry that was
  already pending at the previous sweep, whichever replica wrote it. This covers a publish
  that failed (NATS down: entries stay, a later sweep retries) and a replica that died between
  its write and its publish. Such an entry was most likely never fanned out live either, so
  the sweep also re-sends its events to live streams (they drop what they have by seq).

Repeats are harmless: the durable message id is `<conversation_id>:<seq>`, which JetStream
dedupes within its duplicate window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus import Bus

from . import convert
from .events import durable_msg_id, durable_subject, fan_out_live
from .fanout import Fanout
from .store.base import ChatStore, EventRecord, OutboxEntry

log = logging.getLogger(__name__)

PAGE = 500
# Bound on the conversations whose relayed seq this relay remembers (a hint: dropping it costs
# one entry read).
MAX_REMEMBERED = 100_000


class Relay:
    def __init__(
        self,
        store: ChatStore,
        bus: Bus,
        fanout: Fanout,
        sweep_interval_s: float = 2.0,
        sweep_batch: int = 1000,
    ) -> None:
        self._store = store
        self._bus = bus
        self._fanout = fanout
        self._sweep_interval_s = sweep_interval_s
        self._sweep_batch = sweep_batch
        self._kicked: set[str] = set()
        # Events handed over by kick(), by conversation and seq, until the next relay round.
        self._given: dict[str, dict[int, EventRecord]] = {}
        # Per conversation, a seq up to which events are known to be relayed (this relay
        # cleared them): never above the store's relayed mark, which only rises.
        self._relayed_up_to: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._signals: set[asyncio.Task[None]] = set()
        # (conversation_id, from_seq) of the entries pending at the last sweep.
        self._seen_at_sweep: set[tuple[str, int]] = set()
        self._failing = False
        self._first_sweep = True
        self.relayed = 0

    def kick(self, conversation_id: str, records: Sequence[EventRecord] = ()) -> None:
        """A seq'd event of this conversation was just committed: relay it now.

        `records`: the committed events as the writer has them, so that the relay need not
        read them back from the log.
        """
        self._kicked.add(conversation_id)
        if records:
            given = self._given.setdefault(conversation_id, {})
            for record in records:
                given[record.seq] = record
        self._wake.set()

    def publish_signal(self, event: events_pb2.ConversationEvent) -> None:
        """Publishes a live signal (a receipt, seq 0) to the durable stream in the background.

        Signals are not in the log, so there is no outbox for them: a few retries, then a
        warning. The member row stays the truth of the markers.
        """
        task = asyncio.get_running_loop().create_task(self._publish_signal(event))
        self._signals.add(task)
        task.add_done_callback(self._signals.discard)

    async def _publish_signal(self, event: events_pb2.ConversationEvent) -> None:
        payload = event.SerializeToString()
        delay = 0.2
        for attempt in range(5):
            try:
                await self._bus.publish_durable(
                    durable_subject(event), payload, durable_msg_id(event)
                )
                return
            except Exception as exc:
                if attempt == 4:
                    log.warning("durable publish of a receipt failed: %s", exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="relay")

    async def stop(self, flush_s: float = 1.0) -> None:
        """Stops the loop after one last attempt at what was kicked (bounded by flush_s)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._kicked:
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(flush_s):
                    await self._relay_kicked()
        for task in list(self._signals):
            task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            timeout = next_sweep - loop.time()
            if timeout > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()
            try:
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + self._sweep_interval_s
                await self._relay_kicked()
            except Exception:
                # The store refused a read or a clear: keep going, the next sweep retries.
                log.exception("relay round failed")
                await asyncio.sleep(0.2)

    async def _relay_kicked(self) -> None:
        kicked, self._kicked = self._kicked, set()
        given, self._given = self._given, {}
        entries: list[OutboxEntry] = []
        for conversation_id in kicked:
            records = given.get(conversation_id, {})
            base = self._relayed_up_to.get(conversation_id)
            top = max(records, default=0)
            if (
                base is not None
                and records
                and all(seq in records for seq in range(base + 1, top + 1))
            ):
                # Everything up to base is relayed and every event after it up to top is here:
                # no need to read the entry (events after top come with their own kick).
                if top > base:
                    entries.append(OutboxEntry(conversation_id, base + 1, top))
                continue
            entry = await self._store.outbox_entry(conversation_id)
            if entry is not None:
                entries.append(entry)
        await self._relay(entries, refanout=set(), given=given)

    async def sweep(self) -> None:
        """Relays the entries left behind, and sends them to live streams again.

        An entry seen for the first time may belong to a write whose replica is publishing it
        right now; it is only remembered. One still pending at the next sweep was left behind
        (its writer died, or NATS was down): it is published and re-fanned out. The first
        sweep of a process takes everything at once (what an earlier process left).
        """
        entries = await self._store.pending_outbox(self._sweep_batch)
        keys = {(e.conversation_id, e.from_seq) for e in entries}
        if self._first_sweep:
            stale = keys
            self._first_sweep = False
        else:
            stale = keys & self._seen_at_sweep
        self._seen_at_sweep = keys - stale
        left_behind = [e for e in entries if (e.conversation_id, e.from_seq) in stale]
        await self._relay(left_behind, refanout=stale)

    async def _relay(
        self,
        entries: list[OutboxEntry],
        refanout: set[tuple[str, int]],
        given: dict[str, dict[int, EventRecord]] | None = None,
    ) -> None:
        if not entries:
            return
        given = given or {}
        results = await asyncio.gather(
            *(
                self._publish_entry(
                    e,
                    (e.conversation_id, e.from_seq) in refanout,
                    given.get(e.conversation_id, {}),
                )
                for e in entries
            ),
            return_exceptions=True,
        )
        done: list[tuple[str, int]] = []
        failure: BaseException | None = None
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                failure = result
            else:
                done.append((entry.conversation_id, entry.up_to_seq))
        await self._store.clear_outbox(done)
        if len(self._relayed_up_to) + len(done) > MAX_REMEMBERED:
            self._relayed_up_to.clear()
        for conversation_id, up_to_seq in done:
            known = self._relayed_up_to.get(conversation_id, 0)
            self._relayed_up_to[conversation_id] = max(known, up_to_seq)
        if failure is not None and not self._failing:
            log.warning("durable publish failed, events stay in the outbox: %s", failure)
        elif failure is None and self._failing:
            log.info("durable publishing recovered")
        self._failing = failure is not None

    async def _publish_entry(
        self, entry: OutboxEntry, refanout: bool, given: dict[int, EventRecord]
    ) -> None:
        conversation = (
            await self._store.get_conversation(entry.conversation_id) if refanout else None
        )
        after = entry.from_seq - 1
        while after < entry.up_to_seq:
            record = given.get(after + 1)
            page = (
                [record]
                if record is not None
                else await self._store.events_after(entry.conversation_id, after, PAGE)
            )
            if not page:
                return
            for record in page:
                if record.seq > entry.up_to_seq:
                    return
                event = convert.event(record)
                await self._bus.publish_durable(
                    durable_subject(event), event.SerializeToString(), durable_msg_id(event)
                )
                self.relayed += 1
                if conversation is not None:
                    await fan_out_live(self._fanout, conversation, event)
                after = record.seq
