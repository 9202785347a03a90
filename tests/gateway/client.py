"""A small asyncio WebSocket client for the gateway, shared by gateway and end-to-end tests.

It speaks either encoding, authenticates through Sec-WebSocket-Protocol or an `auth` frame, and
sorts what the server sends: answers by request_id, pushed events in arrival order, the close
code at the end.

    client = await GatewayClient.connect(url, token)               # token in the subprotocol
    client = await GatewayClient.connect(url, token, auth="frame")  # first frame is `auth`
    sent = await client.call("send_message", conversation_id=c, client_msg_id="m1", body="hi")
    event = await client.next_event()
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2
from chatmesh.gateway.v1 import gateway_pb2
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

DEFAULT_TIMEOUT_S = 5.0


class ServerError(Exception):
    """An `error` frame answered a request."""

    def __init__(self, frame: gateway_pb2.ServerFrame) -> None:
        self.frame = frame
        self.code = frame.error.code
        self.message = frame.error.message
        super().__init__(f"{gateway_pb2.ErrorCode.Name(self.code)}: {self.message}")


class GatewayClient:
    """One device's socket to the gateway."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        # Encoding of the frames this client sends (answers come back in the same one).
        self.binary = binary
        # Every server frame with the encoding it arrived in (True for binary), in order.
        self.received: list[tuple[gateway_pb2.ServerFrame, bool]] = []
        self.ready: gateway_pb2.Ready | None = None
        # Answers by request_id, in arrival order (an auth with cursors gets ready, then resumed).
        self._answers: dict[str, deque[gateway_pb2.ServerFrame]] = {}
        self._events: deque[events_pb2.ConversationEvent] = deque()
        self._unsolicited: deque[gateway_pb2.ServerFrame] = deque()
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    # -- connecting -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        auth: Literal["subprotocol", "frame", "none"] = "subprotocol",
        binary: bool = False,
        resume: Mapping[str, int] | None = None,
        expect_ready: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        **connect_kwargs: Any,
    ) -> GatewayClient:
        """Connects and, unless auth="none", authenticates and waits for `ready`.

        With expect_ready=False a subprotocol token is offered but nothing is awaited (for
        tokens the test expects to be refused).
        """
        subprotocols = [Subprotocol("chatmesh.v1")]
        if auth == "subprotocol" and token is not None:
            subprotocols.append(Subprotocol(f"bearer.{token}"))
        connect_kwargs.setdefault("max_size", None)
        connect_kwargs.setdefault("compression", None)
        async with asyncio.timeout(timeout_s):
            ws = await connect(url, subprotocols=subprotocols, **connect_kwargs)
        client = cls(ws, binary)
        if auth == "frame" and token is not None:
            frame = gateway_pb2.ClientFrame(request_id="auth")
            frame.auth.token = token
            for conversation_id, seq in (resume or {}).items():
                frame.auth.resume.add(conversation_id=conversation_id, seq=seq)
            await client.send(frame)
            answer = await client.answer("auth", timeout_s)
            client._expect(answer, "ready")
            client.ready = answer.ready
        elif auth == "subprotocol" and token is not None and expect_ready:
            first = await client.next_unsolicited(timeout_s)
            client._expect(first, "ready")
            client.ready = first.ready
            if resume is not None:
                await client.resume(resume, timeout_s=timeout_s)
        return client

    @property
    def is_open(self) -> bool:
        """False once the socket closed (nothing more will arrive)."""
        return not self._reader.done()

    # -- sending ----------------------------------------------------------------------------

    def next_request_id(self) -> str:
        return f"r{next(self._ids)}"

    async def send(self, frame: gateway_pb2.ClientFrame, *, binary: bool | None = None) -> str:
        """Sends a frame as it is; returns its request_id."""
        if binary if binary is not None else self.binary:
            await self.ws.send(frame.SerializeToString())
        else:
            await self.ws.send(json_format.MessageToJson(frame, indent=None))
        return frame.request_id

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    def frame(
        self, frame_type: str, /, request_id: str | None = None, **fields: Any
    ) -> gateway_pb2.ClientFrame:
        """A ClientFrame of `frame_type` (e.g. "send_message") from field values (JSON names or
        proto names, enums by name)."""
        frame = gateway_pb2.ClientFrame(request_id=request_id or self.next_request_id())
        json_format.ParseDict(fields, getattr(frame, frame_type))
        getattr(frame, frame_type).SetInParent()
        return frame

    async def request(
        self,
        frame: gateway_pb2.ClientFrame,
        *,
        binary: bool | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> gateway_pb2.ServerFrame:
        """Sends a frame and returns the server frame that answers it (errors included)."""
        if not frame.request_id:
            frame.request_id = self.next_request_id()
        await self.send(frame, binary=binary)
        return await self.answer(frame.request_id, timeout_s)

    async def call(
        self, frame_type: str, /, *, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any
    ) -> gateway_pb2.ServerFrame:
        """A request of `frame_type`; raises ServerError for an `error` answer."""
        answer = await self.request(self.frame(frame_type, **fields), timeout_s=timeout_s)
        if answer.WhichOneof("frame") == "error":
            raise ServerError(answer)
        return answer

    async def create_group(self, *members: str, title: str = "team") -> str:
        """Creates a group of this user and `members`; its conversation id."""
        answer = await self.call(
            "create_conversation",
            kind="CONVERSATION_KIND_GROUP",
            title=title,
            member_ids=list(members),
        )
        return str(answer.create_conversation.conversation.conversation.conversation_id)

    async def ping(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> gateway_pb2.ServerFrame:
        return await self.request(self.frame("ping"), timeout_s=timeout_s)

    async def resume(
        self, cursors: Mapping[str, int], *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> gateway_pb2.ResumeResponse:
        """Resumes from `cursors` and waits for `resumed` (after the replay was delivered)."""
        frame = gateway_pb2.ClientFrame(request_id=self.next_request_id())
        frame.resume.SetInParent()
        for conversation_id, seq in cursors.items():
            frame.resume.cursors.add(conversation_id=conversation_id, seq=seq)
        answer = await self.request(frame, timeout_s=timeout_s)
        self._expect(answer, "resumed")
        return answer.resumed

    # -- receiving --------------------------------------------------------------------------

    async def answer(
        self, request_id: str, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> gateway_pb2.ServerFrame:
        """The next server frame answering `request_id`."""
        async with asyncio.timeout(timeout_s):
            while True:
                waiting = self._answers.get(request_id)
                if waiting:
                    frame = waiting.popleft()
                    if not waiting:
                        del self._answers[request_id]
                    return frame
                await self._wait_change()

    async def next_event(
        self, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> events_pb2.ConversationEvent:
        async with asyncio.timeout(timeout_s):
            while not self._events:
                await self._wait_change()
            return self._events.popleft()

    async def events(
        self, count: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[events_pb2.ConversationEvent]:
        async with asyncio.timeout(timeout_s):
            return [await self.next_event(timeout_s) for _ in range(count)]

    def pending_events(self) -> list[events_pb2.ConversationEvent]:
        """Events received and not taken yet (takes them)."""
        events = list(self._events)
        self._events.clear()
        return events

    async def next_unsolicited(
        self, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> gateway_pb2.ServerFrame:
        """The next frame with an empty request_id that is not an event (ready, errors)."""
        async with asyncio.timeout(timeout_s):
            while not self._unsolicited:
                await self._wait_change()
            return self._unsolicited.popleft()

    async def closed(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int | None, str]:
        """Waits for the server to close the socket; (close code, reason)."""
        async with asyncio.timeout(timeout_s):
            await self.ws.wait_closed()
            await asyncio.gather(self._reader, return_exceptions=True)
        rcvd = self.ws.protocol.close_rcvd
        if rcvd is None:
            return None, ""
        return rcvd.code, rcvd.reason

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _wait_change(self) -> None:
        if self._reader.done():
            # Surface what is left, then fail: nothing more will arrive.
            protocol = self.ws.protocol
            # websockets checks that rcvd_then_sent is given exactly when both closes are known.
            raise ConnectionClosed(
                protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
            )
        self._changed.clear()
        waiter = asyncio.ensure_future(self._changed.wait())
        await asyncio.wait([waiter, self._reader], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = gateway_pb2.ServerFrame()
                if isinstance(message, bytes):
                    binary = True
                    frame.ParseFromString(message)
                else:
                    binary = False
                    json_format.Parse(message, frame)
                self.received.append((frame, binary))
                kind = frame.WhichOneof("frame")
                if frame.request_id:
                    self._answers.setdefault(frame.request_id, deque()).append(frame)
                elif kind == "event":
                    self._events.append(frame.event)
                else:
                    self._unsolicited.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self._changed.set()

    @staticmethod
    def _expect(frame: gateway_pb2.ServerFrame, kind: str) -> None:
        if frame.WhichOneof("frame") == "error":
            raise ServerError(frame)
        if frame.WhichOneof("frame") != kind:
            raise AssertionError(f"expected a {kind} frame, got {frame}")


async def eventually(
    predicate: Callable[[], bool], timeout_s: float = DEFAULT_TIMEOUT_S, step_s: float = 0.01
) -> None:
    """Polls `predicate` until it holds (for state with no event to wait on)."""
    async with asyncio.timeout(timeout_s):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(step_s)


def cursor_map(cursors: Sequence[types_pb2.ConversationCursor]) -> dict[str, int]:
    return {c.conversation_id: c.seq for c in cursors}
