"""The load driver of the fault tests: WebSocket devices on real gateways, sending steadily.

Each `Device` is one app install: a gateway socket speaking JSON frames, a sender loop that sends
one message at a time to its conversations in turn, each with its own client_msg_id, and a record
of what the device saw, kept the way an app keeps it (per conversation the last seq; a repeat is
dropped, a jump is a gap). A retryable failure (SPEC: UNAVAILABLE, and what a lost answer or a
closed socket looks like) is retried with the same key; a socket that closes is replaced by one to
the next gateway in the list, resuming from the last seq seen per conversation. An idle device
(`sends=False`) only holds its socket and records what arrives; it too replaces a socket that
closes, resuming.

    driver = LoadDriver(devices, interval_s=0.2)
    driver.start()
    ...                                  # inject a fault while it runs
    await driver.stop()                  # every key in flight ends acked (or the test fails)
    await driver.catch_up(last_seqs)     # every device reaches the store's last seq
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.bus_nats.cluster import token
from tests.gateway.client import GatewayClient, ServerError

# Error codes after which SPEC says a send is safe to retry with the same key.
RETRYABLE = frozenset(
    {
        gateway_pb2.ERROR_CODE_UNAVAILABLE,
        gateway_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
        gateway_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
        gateway_pb2.ERROR_CODE_ABORTED,
    }
)
# Longer than the gateway's own RPC deadline (15 s): a missing answer means a lost socket.
ANSWER_TIMEOUT_S = 25.0
# A hang guard, not a performance figure: a device that cannot reconnect this long fails the test.
RECONNECT_GIVE_UP_S = 60.0
RETRY_PAUSE_S = 0.1
# Handshakes (connect and resume) one driver has in flight at once. Its devices share one
# process: a thousand at once time each other out in it, retry, and never get through.
CONNECTS_AT_ONCE = 50
# How long an idle device's wait for its socket to close lasts before it looks again.
IDLE_WAIT_S = 3600.0


@dataclass(frozen=True)
class Ack:
    device: str
    user: str
    conversation_id: str
    client_msg_id: str
    seq: int
    attempts: int
    first_try_at: float
    acked_at: float
    # Answered as a retry of a send already stored (same key): the original message came back.
    duplicate: bool = False


@dataclass
class Seen:
    """What one device saw of one conversation, de-duplicated by seq as an app does."""

    last: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def record(self, seq: int) -> None:
        if seq <= self.last:
            self.duplicates += 1
            return
        if seq != self.last + 1:
            self.gaps.append((self.last, seq))
        self.last = seq
        self.seqs.append(seq)


class SendFailed(AssertionError):
    """A send got an answer that is not retryable: the product broke a promise."""


class Device:
    """One device: a socket to one of `urls`, its conversations, its acks and what it saw."""

    def __init__(
        self,
        user: str,
        device_id: str,
        conversations: Sequence[str],
        urls: Sequence[str],
        *,
        sends: bool = True,
        interval_s: float | None = None,
    ) -> None:
        self.user = user
        self.device_id = device_id
        self.name = f"{user}/{device_id}"
        self.conversations = list(conversations)
        self.urls = list(urls)
        # An idle device only holds its socket and records what arrives (reconnecting, resuming).
        self.sends = sends
        # Its own pause between sends; None: the driver's.
        self.interval_s = interval_s
        # When its current socket was opened and resumed.
        self.connected_at = 0.0
        # Shared by the driver's devices (LoadDriver): bounds their handshakes in flight.
        self.handshakes: asyncio.Semaphore | None = None
        self.client: GatewayClient | None = None
        self.seen: dict[str, Seen] = {c: Seen() for c in conversations}
        self.acks: list[Ack] = []
        self.retries = 0
        self.reconnects = 0
        self.errors: list[str] = []
        self._url_index = 0
        self._keys = itertools.count(1)
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return self.urls[self._url_index % len(self.urls)]

    def cursors(self) -> dict[str, int]:
        return {c: s.last for c, s in self.seen.items()}

    def take(self) -> None:
        """Records the events that arrived on the socket."""
        if self.client is not None:
            for event in self.client.pending_events():
                self._record(event)

    def _record(self, event: events_pb2.ConversationEvent) -> None:
        if event.seq == 0:
            return  # a live signal (receipt, creation, typing): no seq, never replayed
        self.seen.setdefault(event.conversation_id, Seen()).record(event.seq)

    # -- the socket -----------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self.client is not None and self.client.is_open

    async def connect(self) -> None:
        """A socket to the current gateway that resumes from the cursors (0: from the start)."""
        async with self.handshakes or contextlib.nullcontext():
            client = await GatewayClient.connect(
                self.url, token(self.user, self.device_id), timeout_s=15
            )
            try:
                await client.resume(self.cursors(), timeout_s=15)
            except BaseException:
                # Not left open: a user may hold only so many sockets on one gateway.
                await client.close()
                raise
        self.client = client
        self.connected_at = time.monotonic()

    async def ensure_connected(self) -> None:
        """Replaces a closed socket: the next gateway in the list, resuming where it stopped."""
        async with self._lock:
            if self._alive():
                return
            self.take()
            if self.client is not None:
                await self.client.close()
                self.client = None
            async with asyncio.timeout(RECONNECT_GIVE_UP_S):
                while True:
                    self._url_index += 1
                    try:
                        await self.connect()
                        self.reconnects += 1
                        return
                    except ServerError as exc:
                        # e.g. the resume answered UNAVAILABLE: the replica behind is down
                        if exc.code not in RETRYABLE:
                            raise
                        self.errors.append(f"resume on {self.url}: {exc}"[:200])
                    except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                        self.errors.append(f"connect {self.url}: {exc!r}"[:200])
                    await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self.client is not None:
            self.take()
            with contextlib.suppress(Exception):
                await self.client.close()

    # -- sending --------------------------------------------------------------------------------

    async def send_one(self, conversation_id: str) -> Ack:
        """One send, retried with the same key until it is acknowledged."""
        client_msg_id = f"{self.user}-{self.device_id}-{next(self._keys)}"
        first_try_at = time.monotonic()
        for attempt in itertools.count(1):
            await self.ensure_connected()
            assert self.client is not None
            try:
                answer = await self.client.call(
                    "send_message",
                    timeout_s=ANSWER_TIMEOUT_S,
                    conversation_id=conversation_id,
                    client_msg_id=client_msg_id,
                    body=f"{client_msg_id} to {conversation_id}",
                )
            except ServerError as exc:
                if exc.code not in RETRYABLE:
                    raise SendFailed(f"{self.name} {client_msg_id}: {exc}") from exc
            except (ConnectionClosed, TimeoutError, OSError):
                pass  # the socket went away (or the answer did): reconnect, same key
            else:
                ack = Ack(
                    self.name,
                    self.user,
                    conversation_id,
                    client_msg_id,
                    int(answer.send_message.message.seq),
                    attempt,
                    first_try_at,
                    time.monotonic(),
                    answer.send_message.duplicate,
                )
                self.acks.append(ack)
                return ack
            self.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)
        raise AssertionError("unreachable")


class LoadDriver:
    """Runs every device's sender loop until stop(); then waits for them to catch up."""

    def __init__(self, devices: Sequence[Device], interval_s: float) -> None:
        self.devices = list(devices)
        self.interval_s = interval_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        handshakes = asyncio.Semaphore(CONNECTS_AT_ONCE)
        for device in self.devices:
            device.handshakes = handshakes

    @property
    def senders(self) -> list[Device]:
        return [d for d in self.devices if d.sends]

    async def connect_all(self) -> None:
        async with asyncio.timeout(RECONNECT_GIVE_UP_S + len(self.devices) / CONNECTS_AT_ONCE):
            await asyncio.gather(*(d.connect() for d in self.devices))

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._run(d, i)) for i, d in enumerate(self.devices)]

    async def _run(self, device: Device, index: int) -> None:
        if not device.sends:
            return await self._idle(device)
        interval_s = device.interval_s or self.interval_s
        # Staggered starts, so the devices do not send in lockstep.
        await asyncio.sleep(interval_s * index / max(1, len(self.devices)))
        for n in itertools.count():
            if self._stop.is_set():
                return
            device.take()
            await device.send_one(device.conversations[n % len(device.conversations)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)

    async def _idle(self, device: Device) -> None:
        """Holds the socket until stop(); one that closes is replaced at once, resuming."""
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while not stop.done():
                await device.ensure_connected()
                assert device.client is not None
                closed = asyncio.ensure_future(device.client.closed(timeout_s=IDLE_WAIT_S))
                await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                await asyncio.gather(closed, return_exceptions=True)
                device.take()
        finally:
            stop.cancel()

    def raise_failures(self) -> None:
        """Raises what ended a sender loop early (a send that got a non-retryable answer)."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self, timeout_s: float = 90.0) -> None:
        """Stops after each device's send in flight is acknowledged."""
        self._stop.set()
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*self._tasks)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def acks(self) -> list[Ack]:
        return [ack for d in self.devices for ack in d.acks]

    def acked_since(self, at: float) -> bool:
        """Has every sending device had a send acknowledged that it first tried at or after
        `at`?"""
        return all(any(a.first_try_at >= at for a in d.acks) for d in self.senders)

    async def catch_up(self, last_seqs: Mapping[str, int], timeout_s: float = 60.0) -> None:
        """Until every device saw the last seq of each of its conversations (reconnecting if
        its socket closed); a hang guard, not a timing assertion."""
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(self._catch_up(d, last_seqs) for d in self.devices))

    @staticmethod
    async def _catch_up(device: Device, last_seqs: Mapping[str, int]) -> None:
        while True:
            await device.ensure_connected()
            device.take()
            if all(device.cursors().get(c, 0) >= last_seqs[c] for c in device.conversations):
                return
            assert device.client is not None
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                device._record(await device.client.next_event(1.0))
