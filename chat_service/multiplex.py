"""Many devices' event streams on one call (EventService.SubscribeEventsMultiplexed).

A gateway holds thousands of sockets; one gRPC stream per socket costs it tens of KiB. Here one
call carries them all: each `open` control message starts one stream, which is exactly what
SubscribeEvents runs for that device (`open_stream`: the token checked, then an EventStream),
and each item it yields goes out tagged with its stream id. `close` ends one stream; the end of
the controls (the caller half-closed) or of the call ends every stream.

No stream waits on another: each runs as a task of its own and hands its items to one bounded
queue that the call drains. When the caller reads too slowly, the streams' puts wait, so their
EventStreams' own queues fill and each overflows on its own rule (StreamOverflow ends that stream
with RESOURCE_EXHAUSTED, as it would end a SubscribeEvents call). A stream that fails ends alone,
with the status SubscribeEvents would have ended with, in an `ended` item.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from chatmesh.events.v1 import event_service_pb2 as pb

from chatmesh_common.rpc import RpcError

log = logging.getLogger(__name__)

# Items waiting for the call to send them, all streams together.
MAX_PENDING = 1_000

OpenStream = Callable[[pb.OpenEventStream], AsyncIterator[pb.SubscribeEventsResponse]]
ErrorOf = Callable[[Exception], RpcError | None]


class MultiplexedStreams:
    """The streams of one SubscribeEventsMultiplexed call."""

    def __init__(
        self, open_stream: OpenStream, error_of: ErrorOf, max_pending: int = MAX_PENDING
    ) -> None:
        self._open_stream = open_stream
        self._error_of = error_of
        self._streams: dict[int, asyncio.Task[None]] = {}
        # None: the controls ended, so the call ends.
        self._out: asyncio.Queue[pb.SubscribeEventsMultiplexedResponse | None] = asyncio.Queue(
            max_pending
        )

    @property
    def open_count(self) -> int:
        return len(self._streams)

    async def serve(
        self, controls: AsyncIterator[pb.SubscribeEventsMultiplexedRequest]
    ) -> AsyncIterator[pb.SubscribeEventsMultiplexedResponse]:
        """Every stream's items, as the controls open and close streams, until they end."""
        reader = asyncio.get_running_loop().create_task(self._read_controls(controls))
        try:
            while True:
                item = await self._out.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            tasks = [reader, *self._streams.values()]
            for task in tasks:
                task.cancel()
            self._streams.clear()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_controls(
        self, controls: AsyncIterator[pb.SubscribeEventsMultiplexedRequest]
    ) -> None:
        try:
            async for control in controls:
                which = control.WhichOneof("control")
                if which == "open":
                    self._open(control.open)
                elif which == "close":
                    self._close(control.close.stream_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The call broke (the caller went away): end it, which ends every stream.
            log.debug("multiplexed event call ended: %r", exc)
        await self._out.put(None)

    def _open(self, open_: pb.OpenEventStream) -> None:
        stream_id = open_.stream_id
        self._close(stream_id)
        task = asyncio.get_running_loop().create_task(self._run(stream_id, open_))
        self._streams[stream_id] = task

    def _close(self, stream_id: int) -> None:
        task = self._streams.pop(stream_id, None)
        if task is not None:
            task.cancel()

    async def _run(self, stream_id: int, open_: pb.OpenEventStream) -> None:
        out = self._out
        ended: pb.EventStreamEnded
        try:
            if not stream_id:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "open.stream_id is required")
            items = self._open_stream(open_)
            try:
                async for item in items:
                    response = pb.SubscribeEventsMultiplexedResponse(stream_id=stream_id)
                    response.response.CopyFrom(item)
                    await out.put(response)
            finally:
                # Closed now, not when collected: its `finally` releases the subscriptions.
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await aclose()
            ended = pb.EventStreamEnded(code=grpc.StatusCode.OK.value[0])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = self._error_of(exc)
            if error is None:
                log.exception("event stream %d of a multiplexed call failed", stream_id)
                error = RpcError(grpc.StatusCode.UNKNOWN, "the event stream failed")
            ended = pb.EventStreamEnded(code=error.code.value[0], message=error.message)
        if self._streams.get(stream_id) is asyncio.current_task():
            del self._streams[stream_id]
        await out.put(pb.SubscribeEventsMultiplexedResponse(stream_id=stream_id, ended=ended))
