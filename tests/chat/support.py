"""Helpers for chat_service tests over real sockets: a server harness, clients, event streams.

A `ChatHarness` runs chat_service in the test's event loop on a free port with its own data dir and
can restart it on the same data dir. `harness.client("alice")` gives stubs and metadata for a user.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest
from chatmesh.chat.v1 import chat_service_pb2 as pb
from chatmesh.chat.v1 import chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc, events_pb2

from chat_service.config import ChatConfig
from chat_service.server import ChatService, build_chat_service
from chat_service.store.base import ChatStore
from chatmesh_common.auth import auth_metadata, issue_token
from chatmesh_common.bus import Bus
from chatmesh_common.clock import Clock, SystemClock

SECRET = "chat-tests-secret-not-for-production"
# Signs service tokens (presence_service's AccessService calls); never equal to SECRET.
SERVICE_SECRET = "chat-tests-service-secret-not-for-production"
# How long a test waits for one event it expects before failing instead of hanging.
EVENT_TIMEOUT_S = 5.0

Metadata = tuple[tuple[str, str], ...]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ChannelSource(Protocol):
    """Whatever holds the current channel to the server (it changes when the server restarts)."""

    @property
    def channel(self) -> grpc.aio.Channel: ...


class Client:
    """One user's view of the server: stubs on the harness's current channel and auth metadata."""

    def __init__(self, harness: ChannelSource, user_id: str, device_id: str = "default") -> None:
        self.user_id = user_id
        self.device_id = device_id
        self._harness = harness
        self.md: Metadata = auth_metadata(issue_token(SECRET, user_id, device_id))

    @property
    def chat(self) -> Any:
        """A ChatServiceStub (the generated stubs are untyped)."""
        return chat_service_pb2_grpc.ChatServiceStub(self._harness.channel)

    @property
    def events(self) -> Any:
        """An EventServiceStub."""
        return event_service_pb2_grpc.EventServiceStub(self._harness.channel)

    # Shorthands for the calls most tests make.

    async def send(
        self, conversation_id: str, body: str = "hello", client_msg_id: str | None = None
    ) -> pb.SendMessageResponse:
        response: pb.SendMessageResponse = await self.chat.SendMessage(
            pb.SendMessageRequest(
                conversation_id=conversation_id,
                client_msg_id=client_msg_id or uuid.uuid4().hex,
                body=body,
            ),
            metadata=self.md,
        )
        return response

    async def create(
        self,
        kind: types_pb2.ConversationKind,
        members: Sequence[Client] = (),
        title: str = "",
    ) -> pb.CreateConversationResponse:
        response: pb.CreateConversationResponse = await self.chat.CreateConversation(
            pb.CreateConversationRequest(
                kind=kind, title=title, member_ids=[m.user_id for m in members]
            ),
            metadata=self.md,
        )
        return response

    async def group(self, *members: Client, title: str = "a group") -> str:
        """Creates a group owned by this client; returns its id."""
        response = await self.create(types_pb2.CONVERSATION_KIND_GROUP, members, title)
        return response.conversation.conversation.conversation_id

    async def open_channel(self, *members: Client, title: str = "a channel") -> str:
        """Creates a channel owned by this client; returns its id."""
        response = await self.create(types_pb2.CONVERSATION_KIND_CHANNEL, members, title)
        return response.conversation.conversation.conversation_id

    async def direct(self, peer: Client) -> str:
        response = await self.create(types_pb2.CONVERSATION_KIND_DIRECT, [peer])
        return response.conversation.conversation.conversation_id

    async def history(
        self,
        conversation_id: str,
        before_seq: int = 0,
        after_seq: int = 0,
        limit: int = 0,
        direction: pb.HistoryDirection = pb.HISTORY_DIRECTION_UNSPECIFIED,
    ) -> pb.GetHistoryResponse:
        response: pb.GetHistoryResponse = await self.chat.GetHistory(
            pb.GetHistoryRequest(
                conversation_id=conversation_id,
                before_seq=before_seq,
                after_seq=after_seq,
                limit=limit,
                direction=direction,
            ),
            metadata=self.md,
        )
        return response

    async def all_messages(self, conversation_id: str) -> list[types_pb2.Message]:
        """Every message of a conversation, oldest first, read page by page (newest first)."""
        out: list[types_pb2.Message] = []
        before = 0
        while True:
            page = await self.history(conversation_id, before_seq=before, limit=200)
            out.extend(page.messages)
            if not page.has_more:
                return out[::-1]
            before = page.messages[-1].seq

    async def conversation(self, conversation_id: str) -> types_pb2.ConversationView:
        response: pb.GetConversationResponse = await self.chat.GetConversation(
            pb.GetConversationRequest(conversation_id=conversation_id), metadata=self.md
        )
        return response.conversation

    async def add(
        self,
        conversation_id: str,
        *users: Client,
        role: types_pb2.Role = types_pb2.ROLE_UNSPECIFIED,
    ) -> pb.AddMembersResponse:
        response: pb.AddMembersResponse = await self.chat.AddMembers(
            pb.AddMembersRequest(
                conversation_id=conversation_id, user_ids=[u.user_id for u in users], role=role
            ),
            metadata=self.md,
        )
        return response

    async def members(self, conversation_id: str) -> dict[str, types_pb2.Role]:
        response: pb.ListMembersResponse = await self.chat.ListMembers(
            pb.ListMembersRequest(conversation_id=conversation_id, page_size=1000),
            metadata=self.md,
        )
        return {m.user_id: m.role for m in response.members}

    async def block(self, other: Client) -> None:
        await self.chat.BlockUser(pb.BlockUserRequest(user_id=other.user_id), metadata=self.md)

    async def subscribe_error(self) -> grpc.aio.AioRpcError:
        """The error a new event stream is refused with (fails the test if it opens)."""
        reader = EventReader(self)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await reader.read_replay()
        finally:
            reader.close()
        return info.value

    async def subscribe(self, *cursors: tuple[str, int]) -> EventReader:
        """Opens an event stream and reads through CaughtUp (so live delivery is set up)."""
        reader = EventReader(self, cursors)
        await reader.read_replay()
        return reader


class ChatHarness:
    """chat_service on a free port with a data dir that survives restart()."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        bus: Bus | None = None,
        store: ChatStore | None = None,
        **settings: Any,
    ) -> None:
        """`settings` override ChatConfig fields (e.g. fanout_read_threshold=2); `clock` is the
        service's (a ManualClock moves its timestamps and retention by hand); `bus` and `store`
        (opened, closed by the caller) replace the ones the config would build."""
        self.data_dir = data_dir
        self.bus = bus
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.settings = settings
        self.server: ChatService | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def config(self) -> ChatConfig:
        settings: dict[str, Any] = {"shutdown_grace_s": 0.5, "drain_s": 0, **self.settings}
        return ChatConfig(
            jwt_secret=SECRET,
            service_secret=SERVICE_SECRET,
            data_dir=str(self.data_dir),
            grpc_bind="127.0.0.1:0",
            **settings,
        )

    @property
    def port(self) -> int:
        assert self.server is not None, "the server is not running"
        return self.server.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def channel(self) -> grpc.aio.Channel:
        assert self._channel is not None, "the server is not running"
        return self._channel

    async def start(self) -> None:
        self.server = build_chat_service(
            self.config, bus=self.bus, store=self.store, clock=self.clock
        )
        await self.server.start()
        self._channel = grpc.aio.insecure_channel(self.target)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def restart(self) -> None:
        """Stops the server and starts a new one on the same data dir (on a new port)."""
        await self.stop()
        await self.start()

    def client(self, name: str, device_id: str = "default") -> Client:
        """A client for user `name` (used as the user id as it is)."""
        return Client(self, name, device_id)


class EventReader:
    """One SubscribeEvents call, read with a timeout on every item."""

    def __init__(self, client: Client, cursors: Iterable[tuple[str, int]] = ()) -> None:
        request = event_service_pb2.SubscribeEventsRequest(
            cursors=[types_pb2.ConversationCursor(conversation_id=c, seq=s) for c, s in cursors],
            device_id=client.device_id,
        )
        self.call: Any = client.events.SubscribeEvents(request, metadata=client.md)
        self.replayed: list[events_pb2.ConversationEvent] = []
        self.caught_up: event_service_pb2.CaughtUp | None = None

    async def next_item(
        self, wait_s: float = EVENT_TIMEOUT_S
    ) -> event_service_pb2.SubscribeEventsResponse:
        async with asyncio.timeout(wait_s):
            item = await self.call.read()
        eof = grpc.aio.EOF  # type: ignore[attr-defined]
        assert item is not eof, "the event stream ended"
        assert isinstance(item, event_service_pb2.SubscribeEventsResponse)
        return item

    async def read_replay(self) -> list[events_pb2.ConversationEvent]:
        """Reads events up to CaughtUp; they are kept in `replayed`."""
        while True:
            item = await self.next_item()
            if item.HasField("caught_up"):
                self.caught_up = item.caught_up
                return self.replayed
            self.replayed.append(item.event)

    async def next_event(self, wait_s: float = EVENT_TIMEOUT_S) -> events_pb2.ConversationEvent:
        item = await self.next_item(wait_s)
        assert item.HasField("event"), f"expected an event, got {item}"
        return item.event

    async def events_until(
        self,
        done: Callable[[events_pb2.ConversationEvent], bool],
        wait_s: float = EVENT_TIMEOUT_S,
    ) -> list[events_pb2.ConversationEvent]:
        """Reads events until one satisfies `done`; returns all read, that one last."""
        out: list[events_pb2.ConversationEvent] = []
        async with asyncio.timeout(wait_s):
            while True:
                event = await self.next_event(wait_s)
                out.append(event)
                if done(event):
                    return out

    def close(self) -> None:
        self.call.cancel()


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call fails with; fails the test if it succeeds."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def expect_code(code: grpc.StatusCode, call: Awaitable[Any]) -> str:
    """Asserts the call fails with `code`; returns the status details."""
    error = await rpc_error(call)
    assert error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}"
    return error.details() or ""


def seqs(messages: Iterable[types_pb2.Message]) -> list[int]:
    return [m.seq for m in messages]


def is_created_for(conversation_id: str) -> Callable[[events_pb2.ConversationEvent], bool]:
    """Matches the ConversationCreated live event of one conversation (a handy marker)."""

    def match(event: events_pb2.ConversationEvent) -> bool:
        return event.conversation_id == conversation_id and event.HasField("conversation_created")

    return match
