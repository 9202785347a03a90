"""EventService.SubscribeEventsMultiplexed: many devices' streams on one call.

Each open runs what SubscribeEvents runs for its token (the token checked per stream, the same
replay, CaughtUp and live events), tagged with its stream id; one stream ending (a bad token, a
suspension, a close) ends no other; the caller half-closing ends the call.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from chatmesh.events.v1 import event_service_pb2 as epb
from chatmesh.events.v1 import event_service_pb2_grpc, events_pb2
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb

from chat_service.multiplex import MultiplexedStreams
from chatmesh_common.auth import issue_service_token

from .moderation_support import Moderator
from .support import SERVICE_SECRET, ChatHarness, Client

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0


class Multiplexed:
    """One SubscribeEventsMultiplexed call; items sorted by stream id as they arrive."""

    def __init__(self, harness: ChatHarness) -> None:
        stub: Any = event_service_pb2_grpc.EventServiceStub(harness.channel)
        self.call = stub.SubscribeEventsMultiplexed()
        self.items: dict[int, list[epb.SubscribeEventsMultiplexedResponse]] = defaultdict(list)
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def open(self, stream_id: int, token: str, *cursors: tuple[str, int]) -> None:
        control = epb.SubscribeEventsMultiplexedRequest()
        control.open.stream_id = stream_id
        control.open.token = token
        for conversation_id, seq in cursors:
            control.open.request.cursors.add(conversation_id=conversation_id, seq=seq)
        await self.call.write(control)

    async def close_stream(self, stream_id: int) -> None:
        control = epb.SubscribeEventsMultiplexedRequest()
        control.close.stream_id = stream_id
        await self.call.write(control)

    async def wait_for(
        self, stream_id: int, predicate: Callable[[epb.SubscribeEventsMultiplexedResponse], bool]
    ) -> epb.SubscribeEventsMultiplexedResponse:
        """The first item of the stream matching `predicate` (waits for it)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for item in self.items[stream_id]:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

    async def caught_up(self, stream_id: int) -> None:
        await self.wait_for(stream_id, lambda i: i.response.HasField("caught_up"))

    async def ended(self, stream_id: int) -> epb.EventStreamEnded:
        return (await self.wait_for(stream_id, lambda i: i.HasField("ended"))).ended

    def message_seqs(self, stream_id: int, conversation_id: str) -> list[int]:
        return [
            i.response.event.seq
            for i in self.items[stream_id]
            if i.response.event.conversation_id == conversation_id
            and i.response.event.HasField("message_created")
        ]

    async def seqs(self, stream_id: int, conversation_id: str, last: int) -> list[int]:
        await self.wait_for(
            stream_id,
            lambda i: (
                i.response.event.conversation_id == conversation_id and i.response.event.seq >= last
            ),
        )
        return self.message_seqs(stream_id, conversation_id)

    async def finish(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for item in self.call:
                self.items[item.stream_id].append(item)
                self._changed.set()
        finally:
            self._changed.set()


def token_of(client: Client) -> str:
    return client.md[0][1].removeprefix("Bearer ")


@pytest.fixture
async def mux(chat_server: ChatHarness) -> Any:
    call = Multiplexed(chat_server)
    try:
        yield call
    finally:
        await call.finish()


async def test_each_stream_gets_its_own_users_events_tagged_with_its_id(
    client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """Three devices on one call: each stream gets CaughtUp and the messages of its user."""
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    shared = await alice.group(bob)
    alone = await carol.group(title="carol only")
    for stream_id, who in ((1, alice), (2, bob), (3, carol)):
        await mux.open(stream_id, token_of(who))
        await mux.caught_up(stream_id)
    first = (await alice.send(shared, "to bob")).message.seq
    second = (await carol.send(alone, "to nobody")).message.seq
    assert await mux.seqs(1, shared, first) == [first]
    assert await mux.seqs(2, shared, first) == [first]
    assert await mux.seqs(3, alone, second) == [second]
    assert mux.message_seqs(3, shared) == []
    assert mux.message_seqs(1, alone) == mux.message_seqs(2, alone) == []


async def test_an_open_replays_after_its_cursors(
    client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """An open with cursors replays the log after them, as SubscribeEvents does."""
    alice, bob = client("alice"), client("bob")
    conversation_id = await alice.group(bob)
    sent = [(await alice.send(conversation_id, f"m{n}")).message.seq for n in range(3)]
    await mux.open(7, token_of(bob), (conversation_id, sent[0]))
    await mux.caught_up(7)
    assert mux.message_seqs(7, conversation_id) == sent[1:]


async def test_each_open_token_is_checked_and_a_refusal_ends_only_its_stream(
    client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """A garbage token is UNAUTHENTICATED, a service token PERMISSION_DENIED, each for its own
    stream; a cursor of a conversation the token's user is not in is not replayed."""
    alice, bob, mallory = client("alice"), client("bob"), client("mallory")
    conversation_id = await alice.group(bob)
    secret = (await alice.send(conversation_id, "not for mallory")).message.seq
    await mux.open(1, token_of(bob))
    await mux.caught_up(1)
    await mux.open(2, "not.a-jwt.at-all")
    await mux.open(3, issue_service_token(SERVICE_SECRET, "gateway", ["chat.access"]))
    await mux.open(4, token_of(mallory), (conversation_id, 0))
    assert (await mux.ended(2)).code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert (await mux.ended(3)).code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    caught_up = await mux.wait_for(4, lambda i: i.response.HasField("caught_up"))
    assert list(caught_up.response.caught_up.revoked_conversation_ids) == [conversation_id]
    assert mux.message_seqs(4, conversation_id) == []
    later = (await alice.send(conversation_id, "still flowing")).message.seq
    assert await mux.seqs(1, conversation_id, later) == [later]
    assert secret not in mux.message_seqs(4, conversation_id)


async def test_a_suspension_ends_only_that_users_stream(
    chat_server: ChatHarness, client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """A moderator suspends bob: his stream ends PERMISSION_DENIED, alice's carries on."""
    alice, bob = client("alice"), client("bob")
    conversation_id = await alice.group(bob)
    await mux.open(1, token_of(alice))
    await mux.open(2, token_of(bob))
    await mux.caught_up(1)
    await mux.caught_up(2)
    await Moderator(chat_server).moderation.SuspendUser(
        mpb.SuspendUserRequest(user_id="bob", reason="spam"), metadata=Moderator(chat_server).md
    )
    ended = await mux.ended(2)
    assert ended.code == grpc.StatusCode.PERMISSION_DENIED.value[0] and "suspended" in ended.message
    seq = (await alice.send(conversation_id, "after")).message.seq
    assert await mux.seqs(1, conversation_id, seq) == [seq]


async def test_close_ends_one_stream_and_a_stream_id_can_be_reopened(
    client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """After Close nothing more of that stream comes; the others are untouched; the id can be
    opened again."""
    alice, bob = client("alice"), client("bob")
    conversation_id = await alice.group(bob)
    await mux.open(1, token_of(alice))
    await mux.open(2, token_of(bob))
    await mux.caught_up(1)
    await mux.caught_up(2)
    await mux.close_stream(2)
    first = (await alice.send(conversation_id, "one")).message.seq
    second = (await alice.send(conversation_id, "two")).message.seq
    assert await mux.seqs(1, conversation_id, second) == [first, second]
    assert mux.message_seqs(2, conversation_id) == []
    assert not [i for i in mux.items[2] if i.HasField("ended")]
    # The same id opened again is a new stream: it replays from its cursor.
    await mux.open(2, token_of(bob), (conversation_id, first))
    assert await mux.seqs(2, conversation_id, second) == [second]


async def test_the_caller_half_closing_ends_the_call(
    client: Callable[[str], Client], mux: Multiplexed
) -> None:
    """No more controls: every stream ends with the call (status OK)."""
    await mux.open(1, token_of(client("alice")))
    await mux.caught_up(1)
    await mux.call.done_writing()
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(mux._reader, return_exceptions=True)
    assert await mux.call.code() == grpc.StatusCode.OK


async def test_a_stream_that_waits_holds_up_no_other() -> None:
    """One stream stuck before its first item (a long replay, a slow store read) while another
    delivers: the other's items go out at once; the stuck one is closed with the call."""
    stuck = asyncio.Event()
    released: list[int] = []

    async def items(open_: epb.OpenEventStream) -> AsyncIterator[epb.SubscribeEventsResponse]:
        try:
            if open_.token == "slow":
                await stuck.wait()
            for seq in range(1, 4):
                yield epb.SubscribeEventsResponse(event=events_pb2.ConversationEvent(seq=seq))
            await asyncio.Event().wait()
        finally:
            released.append(open_.stream_id)

    controls: asyncio.Queue[epb.SubscribeEventsMultiplexedRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[epb.SubscribeEventsMultiplexedRequest]:
        while (control := await controls.get()) is not None:
            yield control

    for stream_id, token in ((1, "slow"), (2, "fast")):
        control = epb.SubscribeEventsMultiplexedRequest()
        control.open.stream_id = stream_id
        control.open.token = token
        controls.put_nowait(control)
    streams = MultiplexedStreams(items, lambda exc: None, max_pending=2)
    out = streams.serve(requests())
    async with asyncio.timeout(WAIT_S):
        got = [await anext(out) for _ in range(3)]
    assert [(i.stream_id, i.response.event.seq) for i in got] == [(2, 1), (2, 2), (2, 3)]
    assert streams.open_count == 2
    controls.put_nowait(None)  # the caller half-closes: the call ends, every stream closes
    async with asyncio.timeout(WAIT_S):
        assert [i async for i in out] == []
    assert sorted(released) == [1, 2]
