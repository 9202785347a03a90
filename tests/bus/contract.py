"""The Bus contract: what every service relies on from a bus, embedded or NATS.

`BusContract` holds the tests; a bus runs them by being a param of the `harness` fixture
(tests/bus/conftest.py). Every test uses its own subjects and consumer names (`Tag`), so a
backend whose state outlives a test (the session's JetStream stream) sees only its own events.

"Nothing arrives" is always shown against a later marker on the same subscription or consumer
(delivery is ordered there), never after a sleep. Ack timeouts: the embedded bus takes its
deadlines from a manual clock that `pass_ack_wait` moves; on NATS real time passes while a
fetch waits for the redelivery (a short ack wait keeps that under two seconds).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

import pytest

from chatmesh_common.bus import Bus, DurableConsumer, DurableMessage

# How long a test waits for what it expects before failing instead of hanging.
WAIT_S = 10.0


class BusHarness(Protocol):
    """One bus under test, and how to restart it on the same durable state."""

    bus: Bus
    # The ack wait the tests give their consumers.
    ack_wait_s: float

    async def restart(self) -> None:
        """Closes `bus` and opens a new one on the same durable state."""
        ...

    def pass_ack_wait(self) -> None:
        """Makes the ack wait of deliveries made so far pass (or lets real time do it)."""
        ...

    async def settle(self) -> None:
        """Lets subscriptions reach the server before the publishes that must hit them."""
        ...


class Tag:
    """Subjects and names unique to one test."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]

    def live(self, *tokens: str) -> str:
        return ".".join(("chatmesh", "test", self.id, *tokens))

    def durable(self, *tokens: str) -> str:
        return ".".join(("chatmesh", "events", self.id, *tokens))

    @property
    def everything(self) -> str:
        return self.durable(">")

    def consumer(self, name: str = "c") -> str:
        return f"{name}-{self.id}"

    def msg_id(self, name: object) -> str:
        # Unique in the stream: JetStream dedupes ids across every test of the session.
        return f"{self.id}:{name}"


class Received:
    """A handler that records (subject, payload) and lets a test wait for a count."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, subject: str, payload: bytes) -> None:
        self.items.append((subject, payload))
        self._changed.set()

    async def wait(self, count: int) -> list[bytes]:
        async with asyncio.timeout(WAIT_S):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.payloads

    async def until(self, payload: bytes) -> list[bytes]:
        """Every payload up to and including `payload` (the marker)."""
        async with asyncio.timeout(WAIT_S):
            while payload not in self.payloads:
                self._changed.clear()
                await self._changed.wait()
        return self.payloads

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _subject, payload in self.items]


async def collect(
    consumer: DurableConsumer, done: Callable[[DurableMessage], bool], batch: int = 10
) -> list[DurableMessage]:
    """Fetches until a message satisfies `done`; returns every message fetched, in order."""
    got: list[DurableMessage] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            msgs = await consumer.fetch(batch, timeout_s=1.0)
            got += msgs
            if any([done(msg) for msg in msgs]):
                return got


async def put(bus: Bus, tag: Tag, data: bytes, *tokens: str) -> None:
    """Publishes `data` durably on the tag's `<tokens>` (c.created by default), its id from it."""
    subject = tag.durable(*(tokens or ("c", "created")))
    await bus.publish_durable(subject, data, tag.msg_id(data.decode()))


def data_of(msgs: Sequence[DurableMessage]) -> list[bytes]:
    return [m.data for m in msgs]


def is_data(data: bytes, redelivered: bool = False) -> Callable[[DurableMessage], bool]:
    """`data`, first delivered or (`redelivered`) delivered again."""
    return lambda m: m.data == data and (m.delivery_count > 1) == redelivered


async def fetch_one(consumer: DurableConsumer) -> DurableMessage:
    (msg,) = await collect(consumer, lambda _m: True, batch=1)
    return msg


class BusContract:
    """The tests; subclass it in a test module to run them against `harness`."""

    # Live: publish / subscribe

    async def test_subscribers_get_payloads_in_publish_order(self, harness: BusHarness) -> None:
        """Every subscriber of a subject gets each payload, in publish order."""
        bus, subject = harness.bus, Tag().live("a")
        first, second = Received(), Received()
        await bus.subscribe(subject, first)
        await bus.subscribe(subject, second)
        await harness.settle()
        for i in range(50):
            await bus.publish(subject, str(i).encode())
        expected = [str(i).encode() for i in range(50)]
        assert await first.wait(50) == expected
        assert await second.wait(50) == expected

    async def test_unsubscribed_handlers_get_nothing_more(self, harness: BusHarness) -> None:
        """After unsubscribe, later publishes do not reach the handler."""
        bus, subject = harness.bus, Tag().live("a")
        gone, staying = Received(), Received()
        subscription = await bus.subscribe(subject, gone)
        await bus.subscribe(subject, staying)
        await harness.settle()
        await bus.publish(subject, b"1")
        await gone.wait(1)
        await subscription.unsubscribe()
        await harness.settle()
        await bus.publish(subject, b"2")
        assert await staying.wait(2) == [b"1", b"2"]
        assert gone.payloads == [b"1"]

    async def test_a_failing_handler_does_not_stop_the_others(self, harness: BusHarness) -> None:
        """A handler that raises is logged; other subscribers and later payloads still arrive."""
        bus, subject = harness.bus, Tag().live("a")

        def broken(_subject: str, _payload: bytes) -> None:
            raise RuntimeError("boom")

        received = Received()
        await bus.subscribe(subject, broken)
        await bus.subscribe(subject, received)
        await harness.settle()
        await bus.publish(subject, b"a")
        await bus.publish(subject, b"b")
        assert await received.wait(2) == [b"a", b"b"]

    async def test_other_subjects_are_not_delivered(self, harness: BusHarness) -> None:
        """A subscription gets its own subject only: not a longer, shorter or sibling one."""
        tag = Tag()
        received = Received()
        await harness.bus.subscribe(tag.live("a"), received)
        await harness.settle()
        for subject in (tag.live("b"), tag.live("a", "b"), tag.live()):
            await harness.bus.publish(subject, b"not mine")
        await harness.bus.publish(tag.live("a"), b"marker")
        assert await received.until(b"marker") == [b"marker"]

    async def test_a_star_matches_exactly_one_token(self, harness: BusHarness) -> None:
        """`x.*` gets `x.a`, never `x` or `x.a.b`."""
        tag = Tag()
        received = Received()
        await harness.bus.subscribe(tag.live("*"), received)
        await harness.settle()
        await harness.bus.publish(tag.live(), b"parent")
        await harness.bus.publish(tag.live("a", "b"), b"too deep")
        await harness.bus.publish(tag.live("a"), b"a")
        await harness.bus.publish(tag.live("z"), b"marker")
        assert await received.until(b"marker") == [b"a", b"marker"]
        assert [s for s, _p in received.items] == [tag.live("a"), tag.live("z")]

    async def test_a_star_inside_a_filter_matches_one_token_there(
        self, harness: BusHarness
    ) -> None:
        """`x.*.c` gets `x.a.c` and `x.b.c`, not `x.a.d` or `x.a.b.c`."""
        tag = Tag()
        received = Received()
        await harness.bus.subscribe(tag.live("*", "c"), received)
        await harness.settle()
        for tokens, payload in (
            (("a", "c"), b"1"),
            (("a", "d"), b"wrong last token"),
            (("a", "b", "c"), b"two tokens for the star"),
            (("b", "c"), b"marker"),
        ):
            await harness.bus.publish(tag.live(*tokens), payload)
        assert await received.until(b"marker") == [b"1", b"marker"]

    async def test_a_gt_matches_one_or_more_trailing_tokens(self, harness: BusHarness) -> None:
        """`x.>` gets `x.a` and `x.a.b`, never `x` itself."""
        tag = Tag()
        received = Received()
        await harness.bus.subscribe(tag.live(">"), received)
        await harness.settle()
        await harness.bus.publish(tag.live(), b"parent")
        await harness.bus.publish(tag.live("a"), b"1")
        await harness.bus.publish(tag.live("a", "b", "c"), b"2")
        await harness.bus.publish(tag.live("m"), b"marker")
        assert await received.until(b"marker") == [b"1", b"2", b"marker"]

    async def test_exact_and_filter_subscribers_each_get_a_publish(
        self, harness: BusHarness
    ) -> None:
        """One publish reaches the exact subscriber and every matching filter once each."""
        tag = Tag()
        exact, star, rest = Received(), Received(), Received()
        await harness.bus.subscribe(tag.live("a"), exact)
        await harness.bus.subscribe(tag.live("*"), star)
        await harness.bus.subscribe(tag.live(">"), rest)
        await harness.settle()
        await harness.bus.publish(tag.live("a"), b"1")
        await harness.bus.publish(tag.live("a"), b"2")
        for received in (exact, star, rest):
            assert await received.wait(2) == [b"1", b"2"]

    async def test_an_unsubscribed_filter_gets_nothing_more(self, harness: BusHarness) -> None:
        """Unsubscribing a wildcard filter stops it; another filter keeps going."""
        tag = Tag()
        gone, staying = Received(), Received()
        subscription = await harness.bus.subscribe(tag.live("*"), gone)
        await harness.bus.subscribe(tag.live(">"), staying)
        await harness.settle()
        await harness.bus.publish(tag.live("a"), b"1")
        await gone.wait(1)
        await subscription.unsubscribe()
        await harness.settle()
        await harness.bus.publish(tag.live("a"), b"2")
        assert await staying.wait(2) == [b"1", b"2"]
        assert gone.payloads == [b"1"]

    @pytest.mark.parametrize(
        "subject", ["", "chatmesh..a", "chatmesh.>.a", "chatmesh.a*", "chatmesh.a b", "a."]
    )
    async def test_a_malformed_filter_is_refused(self, harness: BusHarness, subject: str) -> None:
        """Empty tokens, a `>` before the end, partial wildcards and spaces: ValueError."""
        with pytest.raises(ValueError):
            await harness.bus.subscribe(subject, Received())

    async def test_on_reconnect_returns_a_remover(self, harness: BusHarness) -> None:
        """on_reconnect callbacks can be removed (streams do so when they end)."""
        calls: list[int] = []
        remove = harness.bus.on_reconnect(lambda: calls.append(1))
        remove()
        remove()  # twice is harmless
        assert calls == []

    # Durable: publish_durable and consumers

    async def test_a_durable_subject_outside_the_event_stream_is_refused(
        self, harness: BusHarness
    ) -> None:
        """publish_durable takes only subjects under chatmesh.events.>; consumers likewise."""
        tag = Tag()
        with pytest.raises(ValueError):
            await harness.bus.publish_durable(tag.live("a"), b"x", tag.msg_id(1))
        with pytest.raises(ValueError):
            await harness.bus.publish_durable(tag.durable("*"), b"x", tag.msg_id(2))
        with pytest.raises(ValueError):
            await harness.bus.durable_consumer(tag.consumer(), tag.live(">"))
        with pytest.raises(ValueError):
            await harness.bus.durable_consumer(tag.consumer(), "chatmesh.>")

    async def test_bad_consumer_arguments_are_refused(self, harness: BusHarness) -> None:
        """A name with a dot, no filter, a zero ack wait, a zero batch: ValueError."""
        tag = Tag()
        with pytest.raises(ValueError):
            await harness.bus.durable_consumer("a.b", tag.everything)
        with pytest.raises(ValueError):
            await harness.bus.durable_consumer(tag.consumer(), [])
        with pytest.raises(ValueError):
            await harness.bus.durable_consumer(tag.consumer(), tag.everything, ack_wait_s=0)
        consumer = await harness.bus.durable_consumer(tag.consumer(), tag.everything)
        with pytest.raises(ValueError):
            await consumer.fetch(0)
        await consumer.close()

    async def test_a_consumer_gets_what_was_published_before_it_existed(
        self, harness: BusHarness
    ) -> None:
        """A new consumer starts at the beginning of the log, in publish order, with each
        message's subject, data, msg_id and a delivery count of 1."""
        tag = Tag()
        for i in range(5):
            await put(harness.bus, tag, b"%d" % i)
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        got = await collect(consumer, is_data(b"4"))
        assert data_of(got) == [b"0", b"1", b"2", b"3", b"4"]
        assert {m.subject for m in got} == {tag.durable("c", "created")}
        assert [m.msg_id for m in got] == [tag.msg_id(i) for i in range(5)]
        assert [m.delivery_count for m in got] == [1] * 5
        await consumer.close()

    async def test_a_repeated_msg_id_is_stored_once(self, harness: BusHarness) -> None:
        """publish_durable twice with one msg_id: consumers get one copy."""
        tag = Tag()
        subject = tag.durable("c1", "created")
        await harness.bus.publish_durable(subject, b"one", tag.msg_id(1))
        await harness.bus.publish_durable(subject, b"one again", tag.msg_id(1))
        await harness.bus.publish_durable(subject, b"marker", tag.msg_id(2))
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        assert data_of(await collect(consumer, is_data(b"marker"))) == [b"one", b"marker"]
        await consumer.close()

    async def test_a_consumer_filter_matches_with_wildcards(self, harness: BusHarness) -> None:
        """A consumer of `<tag>.*.created` gets created events of every conversation, only."""
        tag = Tag()
        published = [
            (("c1", "created"), b"1"),
            (("c1", "edited"), b"edit"),
            (("c2", "created"), b"2"),
            (("c2", "x", "created"), b"too deep"),
            (("c3", "created"), b"marker"),
        ]
        for i, (tokens, data) in enumerate(published):
            await harness.bus.publish_durable(tag.durable(*tokens), data, tag.msg_id(i))
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.durable("*", "created"), harness.ack_wait_s
        )
        assert data_of(await collect(consumer, is_data(b"marker"))) == [b"1", b"2", b"marker"]
        await consumer.close()

    async def test_a_consumer_with_several_filters_gets_each_event_once(
        self, harness: BusHarness
    ) -> None:
        """Filters `<tag>.*.created` and `<tag>.c1.>` overlap on c1.created: it comes once."""
        tag = Tag()
        for i, (tokens, data) in enumerate(
            [
                (("c1", "created"), b"both"),
                (("c1", "edited"), b"c1"),
                (("c2", "deleted"), b"no"),
                (("c2", "created"), b"marker"),
            ]
        ):
            await harness.bus.publish_durable(tag.durable(*tokens), data, tag.msg_id(i))
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), [tag.durable("*", "created"), tag.durable("c1", ">")]
        )
        got = await collect(consumer, is_data(b"marker"))
        assert data_of(got) == [b"both", b"c1", b"marker"]
        await consumer.close()

    async def test_consumers_of_different_names_each_get_every_event(
        self, harness: BusHarness
    ) -> None:
        """notify and search read the same log independently: an ack by one leaves the other."""
        tag = Tag()
        await put(harness.bus, tag, b"1", "c1", "created")
        notify = await harness.bus.durable_consumer(tag.consumer("notify"), tag.everything)
        search = await harness.bus.durable_consumer(tag.consumer("search"), tag.everything)
        await (await fetch_one(notify)).ack()
        assert (await fetch_one(search)).data == b"1"
        await notify.close()
        await search.close()

    async def test_fetch_returns_at_most_the_batch(self, harness: BusHarness) -> None:
        """fetch(2) of five waiting events returns two; the next fetch goes on from there."""
        tag = Tag()
        for i in range(5):
            await put(harness.bus, tag, b"%d" % i)
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        first = await collect(consumer, lambda _m: True, batch=2)
        while len(first) < 2:  # a bus may hand over fewer than asked
            first += await collect(consumer, lambda _m: True, batch=2 - len(first))
        assert data_of(first) == [b"0", b"1"]
        assert data_of(await collect(consumer, is_data(b"4"))) == [b"2", b"3", b"4"]
        await consumer.close()

    async def test_an_unacked_message_is_redelivered_after_the_ack_wait(
        self, harness: BusHarness
    ) -> None:
        """Fetched and not acked: it comes again once the ack wait passed, counted again.

        (At least twice: JetStream counts a delivery to a pull request that expired unseen.)"""
        tag = Tag()
        await put(harness.bus, tag, b"1")
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        first = await fetch_one(consumer)
        harness.pass_ack_wait()
        again = await fetch_one(consumer)
        assert (again.data, again.msg_id, first.delivery_count) == (b"1", first.msg_id, 1)
        assert again.delivery_count >= 2
        await again.ack()
        await consumer.close()

    async def test_an_acked_message_is_not_redelivered(self, harness: BusHarness) -> None:
        """Acked, then the ack wait passes: only the later unacked message comes again."""
        tag = Tag()
        await put(harness.bus, tag, b"acked")
        await put(harness.bus, tag, b"left")
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        acked = await fetch_one(consumer)
        await acked.ack()
        assert (await fetch_one(consumer)).data == b"left"
        harness.pass_ack_wait()
        # "left" was delivered after "acked": had the ack been lost, "acked" would come first.
        assert data_of(await collect(consumer, is_data(b"left", redelivered=True))) == [b"left"]
        await consumer.close()

    async def test_a_nak_redelivers_without_waiting_for_the_ack_wait(
        self, harness: BusHarness
    ) -> None:
        """nak(): the message comes again at once, counted again."""
        tag = Tag()
        await put(harness.bus, tag, b"1")
        consumer = await harness.bus.durable_consumer(tag.consumer(), tag.everything, ack_wait_s=60)
        await (await fetch_one(consumer)).nak()
        again = await fetch_one(consumer)
        assert again.data == b"1" and again.delivery_count >= 2
        await again.ack()
        await consumer.close()

    async def test_a_nak_with_a_delay_holds_the_message_back(self, harness: BusHarness) -> None:
        """nak(delay): a later event comes first; the message comes again once the delay passed."""
        tag = Tag()
        await put(harness.bus, tag, b"later please")
        consumer = await harness.bus.durable_consumer(tag.consumer(), tag.everything, ack_wait_s=60)
        await (await fetch_one(consumer)).nak(delay_s=harness.ack_wait_s)
        await put(harness.bus, tag, b"marker")
        assert (await fetch_one(consumer)).data == b"marker"
        harness.pass_ack_wait()
        again = await fetch_one(consumer)
        assert again.data == b"later please" and again.delivery_count >= 2
        await consumer.close()

    # Durable: restarts

    async def test_a_consumer_resumes_after_its_acked_position_after_a_restart(
        self, restartable_harness: BusHarness
    ) -> None:
        """Everything acked, bus restarted: the next event is the first one the consumer gets."""
        harness = restartable_harness
        tag = Tag()
        for i in range(3):
            await put(harness.bus, tag, b"%d" % i)
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        for msg in await collect(consumer, is_data(b"2")):
            await msg.ack()
        await harness.restart()
        await put(harness.bus, tag, b"after")
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        assert data_of(await collect(consumer, lambda _m: True, batch=1)) == [b"after"]
        await consumer.close()

    async def test_unacked_messages_come_again_after_a_restart(
        self, restartable_harness: BusHarness
    ) -> None:
        """Delivered and not acked before a restart: redelivered after it once the ack wait
        passes, counted again; the acked ones never come back."""
        harness = restartable_harness
        tag = Tag()
        for data in (b"acked", b"unacked-1", b"unacked-2"):
            await put(harness.bus, tag, data)
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        await (await fetch_one(consumer)).ack()
        await collect(consumer, is_data(b"unacked-2"))
        await harness.restart()
        await put(harness.bus, tag, b"new")
        consumer = await harness.bus.durable_consumer(
            tag.consumer(), tag.everything, harness.ack_wait_s
        )
        harness.pass_ack_wait()
        seen: dict[bytes, int] = {}

        def all_seen(msg: DurableMessage) -> bool:
            seen[msg.data] = msg.delivery_count
            return {b"unacked-1", b"unacked-2", b"new"} <= seen.keys()

        got = await collect(consumer, all_seen)
        assert seen.keys() == {b"unacked-1", b"unacked-2", b"new"}
        assert seen[b"unacked-1"] >= 2 and seen[b"unacked-2"] >= 2
        assert b"acked" not in data_of(got)
        await consumer.close()
