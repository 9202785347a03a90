"""An in-memory stand-in for chat_service's gRPC side, for gateway-only tests.

It is a test double of the protocol peer (ChatService + EventService over real gRPC on a free
port), with knobs the real service does not have: slow calls, a status chosen by the test, streams
broken on demand, a restart on the same port. Tests of the real thing use chat_service itself.

Conversations are a member list and an event log; SendMessage appends a MessageCreated event and
pushes it to the members' open streams (a retry with the same client_msg_id returns the
original). A body `status:<CODE>` makes SendMessage fail with that gRPC status
(RESOURCE_EXHAUSTED also sets `retry-after-ms: 1500` in the trailers).
tests/gateway/test_fake_matches_chat.py runs the same scenarios against this fake and the real
chat_service, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2

from chatmesh_common.auth import Identity, TokenError, TokenVerifier, bearer_token

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(eq=False)
class _Stream:
    user_id: str
    queue: asyncio.Queue[events_pb2.ConversationEvent | grpc.StatusCode] = field(
        default_factory=asyncio.Queue
    )


class FakeChat:
    """State and knobs; `start()` serves it on 127.0.0.1 (a free port unless given)."""

    def __init__(self, secret: str) -> None:
        self.verifier = TokenVerifier(secret)
        self.members: dict[str, set[str]] = {}
        self.logs: dict[str, list[events_pb2.ConversationEvent]] = {}
        self.streams: set[_Stream] = set()
        self.subscribe_requests: list[event_service_pb2.SubscribeEventsRequest] = []
        self.history_delay_s = 0.0
        # When set, new streams are refused with this status before anything is sent.
        self.refuse_streams: grpc.StatusCode | None = None
        self.sends = 0
        # Messages by (sender, conversation, client_msg_id), for idempotent retries.
        self.sent: dict[tuple[str, str, str], types_pb2.Message] = {}
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._stream_opened = asyncio.Condition()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server(
            _ChatServicer(self),  # type: ignore[abstract]  # the rest answer UNIMPLEMENTED
            server,
        )
        event_service_pb2_grpc.add_EventServiceServicer_to_server(
            # The multiplexed call answers UNIMPLEMENTED: gateways fall back to per-device streams.
            _EventServicer(self),  # type: ignore[abstract]
            server,
        )
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self, grace_s: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None

    # -- state ------------------------------------------------------------------------------

    def add_conversation(self, conversation_id: str, *members: str) -> None:
        self.members[conversation_id] = set(members)
        self.logs.setdefault(conversation_id, [])

    def append_message(
        self, conversation_id: str, sender_id: str, body: str, client_msg_id: str = ""
    ) -> events_pb2.ConversationEvent:
        """Writes a message event and pushes it to the members' open streams."""
        log = self.logs.setdefault(conversation_id, [])
        seq = len(log) + 1
        message = types_pb2.Message(
            conversation_id=conversation_id,
            seq=seq,
            message_id=f"m{seq}",
            sender_id=sender_id,
            body=body,
            client_msg_id=client_msg_id,
            version=1,
            kind=types_pb2.MESSAGE_KIND_TEXT,
        )
        event = events_pb2.ConversationEvent(
            conversation_id=conversation_id, seq=seq, actor_id=sender_id
        )
        event.message_created.message.CopyFrom(message)
        log.append(event)
        for stream in self.streams:
            if stream.user_id in self.members.get(conversation_id, ()):
                stream.queue.put_nowait(event)
        return event

    def push(self, user_id: str, event: events_pb2.ConversationEvent) -> int:
        """Pushes an event to the user's open streams as it is (not logged); how many got it."""
        count = 0
        for stream in self.streams:
            if stream.user_id == user_id:
                stream.queue.put_nowait(event)
                count += 1
        return count

    def break_streams(self, status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Ends every open stream with `status` (after what is already queued)."""
        for stream in self.streams:
            stream.queue.put_nowait(status)

    async def wait_streams(self, count: int, timeout_s: float = 5.0) -> None:
        """Waits until `count` streams have been opened in total."""
        async with asyncio.timeout(timeout_s), self._stream_opened:
            await self._stream_opened.wait_for(lambda: len(self.subscribe_requests) >= count)

    async def _opened(self, request: event_service_pb2.SubscribeEventsRequest) -> None:
        async with self._stream_opened:
            self.subscribe_requests.append(request)
            self._stream_opened.notify_all()

    async def authenticate(self, context: Context) -> Identity:
        try:
            return self.verifier.verify(bearer_token(context.invocation_metadata()))
        except TokenError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise


class _ChatServicer(chat_service_pb2_grpc.ChatServiceServicer):
    def __init__(self, fake: FakeChat) -> None:
        self.fake = fake

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Context
    ) -> pb.SendMessageResponse:
        who = await self.fake.authenticate(context)
        self.fake.sends += 1
        if request.body.startswith("status:"):
            status = grpc.StatusCode[request.body.removeprefix("status:")]
            if status is grpc.StatusCode.RESOURCE_EXHAUSTED:
                context.set_trailing_metadata((("retry-after-ms", "1500"),))
            await context.abort(status, f"test asked for {status.name}")
        if who.user_id not in self.fake.members.get(request.conversation_id, ()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a member")
        key = (who.user_id, request.conversation_id, request.client_msg_id)
        if request.client_msg_id and key in self.fake.sent:
            # A retry, as in chat_service: the original message, nothing new.
            return pb.SendMessageResponse(message=self.fake.sent[key])
        event = self.fake.append_message(
            request.conversation_id, who.user_id, request.body, request.client_msg_id
        )
        if request.client_msg_id:
            self.fake.sent[key] = event.message_created.message
        return pb.SendMessageResponse(message=event.message_created.message)

    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: Context
    ) -> pb.GetHistoryResponse:
        who = await self.fake.authenticate(context)
        if who.user_id not in self.fake.members.get(request.conversation_id, ()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a member")
        if self.fake.history_delay_s:
            await asyncio.sleep(self.fake.history_delay_s)
        log = self.fake.logs.get(request.conversation_id, [])
        return pb.GetHistoryResponse(
            messages=[e.message_created.message for e in reversed(log)],
            last_seq=len(log),
        )


class _EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, fake: FakeChat) -> None:
        self.fake = fake

    async def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: Context
    ) -> AsyncIterator[event_service_pb2.SubscribeEventsResponse]:
        fake = self.fake
        who = await fake.authenticate(context)
        if fake.refuse_streams is not None:
            await fake._opened(request)
            await context.abort(fake.refuse_streams, "stream refused by the test")
        # Registered before the replay: an event written meanwhile comes twice, never not at all.
        stream = _Stream(who.user_id)
        fake.streams.add(stream)
        await fake._opened(request)
        try:
            revoked: list[str] = []
            for cursor in request.cursors:
                if who.user_id not in fake.members.get(cursor.conversation_id, ()):
                    revoked.append(cursor.conversation_id)
                    continue
                for event in fake.logs.get(cursor.conversation_id, []):
                    if event.seq > cursor.seq:
                        yield event_service_pb2.SubscribeEventsResponse(event=event)
            caught_up = event_service_pb2.CaughtUp(revoked_conversation_ids=revoked)
            named = {cursor.conversation_id for cursor in request.cursors}
            for conversation_id, members in fake.members.items():
                # As chat_service: each other conversation's seq when the stream started.
                if who.user_id in members and conversation_id not in named:
                    seq = len(fake.logs.get(conversation_id, ()))
                    caught_up.baselines.add(conversation_id=conversation_id, seq=seq)
            yield event_service_pb2.SubscribeEventsResponse(caught_up=caught_up)
            while True:
                item = await stream.queue.get()
                if isinstance(item, grpc.StatusCode):
                    await context.abort(item, "stream broken by the test")
                yield event_service_pb2.SubscribeEventsResponse(event=item)
        finally:
            fake.streams.discard(stream)
