"""Every socket's event stream on a few calls to chat_service (SubscribeEventsMultiplexed).

One gRPC stream per socket costs the gateway most of an idle socket's memory (HTTP/2 stream
state, call objects, a reader task). Here the gateway keeps a fixed number of calls per chat
channel (`CHATMESH_WS_EVENT_CALLS`, sockets spread over them in turn: one call carries its items
one at a time, so a single call would queue a busy gateway's deliveries behind each other; a few
calls cost a few streams per gateway, not one per socket). On its call, a socket's
stream is an `open` control (its device's token and cursors, under a stream id never used
before on that call) and a `close` control; chat_service runs for it exactly what SubscribeEvents
would, and answers with items tagged with the stream id, which one reader task hands to the
socket's listener (its Session).

Nothing changes for the protocol: a listener gets the same items and the same end (the status
SubscribeEvents would have ended with) as from a call of its own, so resume, gap filling and
the slow-consumer rule are the same code. The reader never waits on a socket: a listener only
queues frames in its socket's bounded writer, which closes a socket that cannot keep up.

When the call ends (chat_service restarted, the connection cut), every stream on it ends with no
status, as a broken stream of its own would, so each socket resubscribes from the seqs it has
delivered (no gap) and the first open starts a new call. A chat_service that does not know the
method (UNIMPLEMENTED: an older replica during an upgrade) turns multiplexing off for this
gateway: the sockets resubscribe with streams of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol, cast

import grpc
from chatmesh.events.v1 import event_service_pb2 as pb

from chatmesh_common.auth import bearer_token
from gateway_ws.upstream import EOF, EVENT_SERVICE

log = logging.getLogger(__name__)

MultiplexMethod = grpc.aio.StreamStreamMultiCallable[
    pb.SubscribeEventsMultiplexedRequest, pb.SubscribeEventsMultiplexedResponse
]
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}


class StreamListener(Protocol):
    """Who gets one stream's items and end (a Session), reported with the stream's generation."""

    def stream_item(self, generation: int, item: pb.SubscribeEventsResponse) -> None: ...

    def stream_ended(
        self, generation: int, status: grpc.StatusCode | None, details: str
    ) -> None: ...


class MuxedStream:
    """One socket's stream on the shared call; `cancel()` closes it (like a call's cancel)."""

    __slots__ = ("_call", "_stream_id")

    def __init__(self, call: _MuxCall, stream_id: int) -> None:
        self._call = call
        self._stream_id = stream_id

    def cancel(self) -> None:
        self._call.close(self._stream_id)


class _MuxCall:
    """One SubscribeEventsMultiplexed call and the streams open on it."""

    def __init__(self, mux: EventMux, method: MultiplexMethod) -> None:
        self._mux = mux
        self.streams: dict[int, tuple[StreamListener, int]] = {}
        self.dead = False
        self._ids = itertools.count(1)
        # Controls are small and one per open or close: unbounded, drained by one task.
        self._outbox: asyncio.Queue[pb.SubscribeEventsMultiplexedRequest] = asyncio.Queue()
        # No request iterator: controls go out with write(), from one task.
        self._call = cast(Any, method)()
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._reader = loop.create_task(self._read())

    def open(
        self,
        request: pb.SubscribeEventsRequest,
        token: str,
        listener: StreamListener,
        generation: int,
    ) -> MuxedStream:
        stream_id = next(self._ids)
        self.streams[stream_id] = (listener, generation)
        control = pb.SubscribeEventsMultiplexedRequest()
        control.open.stream_id = stream_id
        control.open.token = token
        control.open.request.CopyFrom(request)
        self._outbox.put_nowait(control)
        return MuxedStream(self, stream_id)

    def close(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._close_remote(stream_id)

    def _close_remote(self, stream_id: int) -> None:
        if not self.dead:
            control = pb.SubscribeEventsMultiplexedRequest()
            control.close.stream_id = stream_id
            self._outbox.put_nowait(control)

    async def cancel(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)

    async def _write(self) -> None:
        call = cast(Any, self._call)
        try:
            while True:
                await call.write(await self._outbox.get())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The call is over; the reader reports its end to every stream.
            log.debug("multiplexed event call: write failed: %r", exc)

    async def _read(self) -> None:
        call = self._call
        status: grpc.StatusCode | None = None
        details = ""
        try:
            while True:
                item = await call.read()
                if item is EOF:
                    break
                self._dispatch(cast(pb.SubscribeEventsMultiplexedResponse, item))
        except grpc.aio.AioRpcError as exc:
            status = exc.code()
            details = exc.details() or ""
        except (grpc.aio.UsageError, grpc.aio.InternalError):
            details = "channel closing"
        except asyncio.CancelledError:
            details = "gateway stopping"
            raise
        finally:
            self._end(status, details)

    def _dispatch(self, item: pb.SubscribeEventsMultiplexedResponse) -> None:
        stream_id = item.stream_id
        entry = self.streams.get(stream_id)
        if entry is None:
            return  # closed meanwhile: its late items are dropped
        listener, generation = entry
        try:
            if item.HasField("ended"):
                del self.streams[stream_id]
                code = _CODES.get(item.ended.code, grpc.StatusCode.UNKNOWN)
                status = None if code is grpc.StatusCode.OK else code
                listener.stream_ended(generation, status, item.ended.message)
            else:
                listener.stream_item(generation, item.response)
        except Exception:
            # A bug or a malformed item: that socket starts over from what it delivered.
            log.exception("event stream %d failed; resubscribing", stream_id)
            if self.streams.pop(stream_id, None) is not None:
                self._close_remote(stream_id)
                listener.stream_ended(generation, None, "gateway error")

    def _end(self, status: grpc.StatusCode | None, details: str) -> None:
        self.dead = True
        self._writer.cancel()
        self._call.cancel()
        self._mux.call_ended(self, status)
        streams, self.streams = self.streams, {}
        if streams:
            log.info(
                "multiplexed event call ended (%s %s): %d streams resubscribe",
                status.name if status is not None else "no status",
                details,
                len(streams),
            )
        # Not the stream's own status: a call-level failure is never the device's, so every
        # stream resubscribes (from its delivered seqs), as after a broken stream of its own.
        for listener, generation in streams.values():
            try:
                listener.stream_ended(generation, None, details)
            except Exception:
                log.exception("ending an event stream failed")


class EventMux:
    """The gateway's multiplexed event calls to one chat channel, each opened on first use."""

    def __init__(self, channel: grpc.aio.Channel, calls: int = 1) -> None:
        if calls < 1:
            raise ValueError("calls must be at least 1")
        self._method: MultiplexMethod = channel.stream_stream(
            f"/{EVENT_SERVICE}/SubscribeEventsMultiplexed",
            request_serializer=pb.SubscribeEventsMultiplexedRequest.SerializeToString,
            response_deserializer=pb.SubscribeEventsMultiplexedResponse.FromString,
        )
        self._calls: list[_MuxCall | None] = [None] * calls
        self._turn = itertools.count()
        # False once chat_service answered UNIMPLEMENTED: sockets use streams of their own.
        self.supported = True

    @property
    def open_streams(self) -> int:
        return sum(len(call.streams) for call in self._calls if call is not None)

    @property
    def live_calls(self) -> list[_MuxCall]:
        return [call for call in self._calls if call is not None]

    def open(
        self,
        request: pb.SubscribeEventsRequest,
        metadata: Sequence[tuple[str, str]],
        listener: StreamListener,
        generation: int,
    ) -> MuxedStream:
        """Opens one socket's stream with the token of its call `metadata`, on the next call
        in turn."""
        slot = next(self._turn) % len(self._calls)
        call = self._calls[slot]
        if call is None or call.dead:
            call = self._calls[slot] = _MuxCall(self, self._method)
        return call.open(request, bearer_token(metadata), listener, generation)

    def call_ended(self, call: _MuxCall, status: grpc.StatusCode | None) -> None:
        self._calls = [None if c is call else c for c in self._calls]
        if status is grpc.StatusCode.UNIMPLEMENTED:
            log.warning(
                "chat service has no SubscribeEventsMultiplexed: one event stream per socket"
            )
            self.supported = False

    async def close(self) -> None:
        """Ends the calls (gateway stop); streams on them end as after a break."""
        calls, self._calls = self._calls, [None] * len(self._calls)
        await asyncio.gather(*(call.cancel() for call in calls if call is not None))
