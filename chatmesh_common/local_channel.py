"""An in-process stand-in for `grpc.aio.Channel`: calls servicers directly, no HTTP/2 in between.

`chatmesh dev` runs the gateway and the services in one process and one event loop. Over a real
loopback channel every call pays the client and server gRPC stacks (Cython, C-core, HTTP/2 framing,
a poller thread hop); `LocalChannel` calls the servicer's handler in the caller's task instead.

It is built from the same registrations the gRPC server gets (`(add_fn, servicer)` pairs): each
generated `add_*Servicer_to_server` is called on a collector that keeps the method handlers.
Multicallables follow the grpc.aio calling convention (`metadata=`, `timeout=`):

* a request serializer given: the request object is handed to the handler as is; none: the
  request is bytes, parsed with the handler's request deserializer;
* a response deserializer given: the handler's answer is returned as the object; none: it is
  serialized with the handler's response serializer (callers that keep answers as bytes).

Refusals surface as real `grpc.aio.AioRpcError`s (code, trailing metadata, details), so callers
handle them exactly as over the network: `context.abort` -> its code, an exceeded `timeout` ->
DEADLINE_EXCEEDED, an unexpected servicer exception -> UNKNOWN. A server stream is the
servicer's async generator, advanced by `read()` in the reader's task; `cancel()` closes the
generator (its `finally` blocks run). Objects handed across are not copied: callers must not
mutate a request after the call, nor the answers they get.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Final

import grpc

from chatmesh_common.grpc_server import access_log, log_access
from chatmesh_common.logs import fields
from chatmesh_common.metrics import GRPC_HANDLED, GRPC_LATENCY
from chatmesh_common.request_id import request_id_of

log = logging.getLogger(__name__)

Registration = tuple[Callable[[Any, Any], None], Any]
MetadataPairs = Sequence[tuple[str, str | bytes]]

# The end-of-stream sentinel of grpc.aio (missing from the type stubs).
EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
PEER: Final = "local:in-process"


class _Collector:
    """What generated `add_*Servicer_to_server` functions call on a server (grpcio 1.85)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[Any]) -> None:
        # The registered method handlers below carry the same handlers by full method name.
        pass

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        for name, handler in method_handlers.items():
            self.handlers[f"/{service_name}/{name}"] = handler


class _Abort(Exception):
    """Raised by `LocalContext.abort`; the call turns it into an AioRpcError."""


class LocalContext:
    """The part of `grpc.aio.ServicerContext` that the chatmesh servicers use."""

    __slots__ = ("_code", "_deadline", "_details", "_done", "_metadata", "_trailing")

    def __init__(self, metadata: MetadataPairs, deadline: float | None) -> None:
        self._metadata = tuple(metadata)
        self._deadline = deadline  # event-loop time, None for no deadline
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self._done = False

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: MetadataPairs = (),
    ) -> None:
        if code is grpc.StatusCode.OK:
            raise ValueError("abort() with StatusCode.OK")
        self._code = code
        self._details = details
        if trailing_metadata:
            self._trailing = (*self._trailing, *trailing_metadata)
        raise _Abort(details)

    def set_trailing_metadata(self, trailing_metadata: MetadataPairs) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailing

    async def send_initial_metadata(self, initial_metadata: MetadataPairs) -> None:
        pass

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    def peer(self) -> str:
        return PEER

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return self._done


def _metadata(pairs: Iterable[tuple[str, str | bytes]]) -> grpc.aio.Metadata:
    return grpc.aio.Metadata(*pairs)


def _rpc_error(
    code: grpc.StatusCode, trailing: Iterable[tuple[str, str | bytes]], details: str
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, _metadata(()), _metadata(trailing), details, None)


def _error(context: LocalContext, exc: BaseException | None) -> grpc.aio.AioRpcError:
    """The AioRpcError a caller sees for a call that ended with `exc` (or a code set)."""
    code = context.code()
    details = context.details()
    if isinstance(exc, _Abort) or (exc is None and code is not None):
        assert code is not None
        return _rpc_error(code, context.trailing_metadata(), details or "")
    if code is None or code is grpc.StatusCode.OK:
        # What a real server answers when a handler raises.
        code = grpc.StatusCode.UNKNOWN
        details = f"Unexpected {type(exc).__name__}: {exc}"
    return _rpc_error(code, context.trailing_metadata(), details or "")


def _deadline_error(context: LocalContext) -> grpc.aio.AioRpcError:
    return _rpc_error(
        grpc.StatusCode.DEADLINE_EXCEEDED, context.trailing_metadata(), "Deadline Exceeded"
    )


def _closed_error() -> Exception:
    return grpc.aio.UsageError("Channel is closed.")  # type: ignore[no-any-return]


class _Metrics:
    """The server interceptor's counters, for unary calls that never reach the gRPC server."""

    def __init__(self, method: str) -> None:
        self._method = method
        self._latency = GRPC_LATENCY.labels(method)
        self._handled: dict[str, Any] = {}

    def observe(self, started: float, code: str) -> None:
        self._latency.observe(time.perf_counter() - started)
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = GRPC_HANDLED.labels(self._method, code)
        child.inc()


class _LocalMethod:
    """One method of a LocalChannel: its handler, and whether requests and answers cross as
    objects (the caller gave a serializer / deserializer) or as bytes."""

    # The handler's behaviour attribute this kind of call runs (set by each subclass).
    _kind = ""

    def __init__(
        self,
        channel: LocalChannel,
        method: str,
        handler: Any,
        objects_in: bool,
        objects_out: bool,
    ) -> None:
        self._channel = channel
        self._method = method
        self._behaviour = getattr(handler, self._kind)
        self._parse = None if objects_in else handler.request_deserializer
        self._serialize = None if objects_out else handler.response_serializer


class LocalUnaryUnary(_LocalMethod):
    """`channel.unary_unary(...)`: `await method(request, metadata=..., timeout=...)`."""

    _kind = "unary_unary"

    def __init__(
        self,
        channel: LocalChannel,
        method: str,
        handler: Any,
        objects_in: bool,
        objects_out: bool,
    ) -> None:
        super().__init__(channel, method, handler, objects_in, objects_out)
        self._metrics = _Metrics(method)

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self._invoke(request, metadata or (), timeout)

    async def _invoke(self, request: Any, metadata: MetadataPairs, timeout_s: float | None) -> Any:
        if self._channel.closed:
            raise _closed_error()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        context = LocalContext(metadata, deadline)
        code = "OK"
        try:
            parse = self._parse
            message = parse(request) if parse is not None else request
            if deadline is None:
                response = await self._behaviour(message, context)
            else:
                async with asyncio.timeout_at(deadline) as scope:
                    try:
                        response = await self._behaviour(message, context)
                    except asyncio.CancelledError:
                        if scope.expired():
                            context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
                        raise
        except TimeoutError as exc:
            if context.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                code = "DEADLINE_EXCEEDED"
                raise _deadline_error(context) from None
            error = _error(context, exc)
            code = error.code().name
            raise error from exc
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            if not isinstance(exc, _Abort):
                log.exception(
                    "unexpected error in local call %s",
                    self._method,
                    extra=fields(request_id=request_id_of(metadata)),
                )
            error = _error(context, exc)
            code = error.code().name
            raise error from None
        finally:
            context._done = True
            self._metrics.observe(started, code)
            # As the server interceptor does: `chatmesh dev`'s calls never reach a gRPC server.
            if access_log.isEnabledFor(logging.INFO):
                log_access(self._method, code, time.perf_counter() - started, PEER, metadata)
        if context.code() not in (None, grpc.StatusCode.OK):
            error = _error(context, None)
            code = error.code().name
            raise error
        serialize = self._serialize
        return serialize(response) if serialize is not None else response


class LocalStreamCall:
    """One server-streaming call: `read()`, `async for`, `cancel()` like a grpc.aio call."""

    __slots__ = ("_closer", "_context", "_error", "_finished", "_items", "_serialize")

    def __init__(
        self,
        items: AsyncIterator[Any],
        context: LocalContext,
        serialize: Callable[[Any], bytes] | None,
    ) -> None:
        self._items = items
        self._context = context
        self._serialize = serialize
        self._finished = False
        self._error: grpc.aio.AioRpcError | None = None
        self._closer: asyncio.Task[None] | None = None

    async def read(self) -> Any:
        if self._error is not None:
            raise self._error
        if self._finished:
            return EOF
        deadline = self._context._deadline
        try:
            if deadline is None:
                item = await anext(self._items)
            else:
                async with asyncio.timeout_at(deadline):
                    item = await anext(self._items)
        except StopAsyncIteration:
            self._finish()
            if self._context.code() not in (None, grpc.StatusCode.OK):
                self._error = _error(self._context, None)
                raise self._error from None
            return EOF
        except TimeoutError as exc:
            self._finish()
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                self._error = _deadline_error(self._context)
            else:
                self._error = _error(self._context, exc)
            raise self._error from None
        except asyncio.CancelledError:
            # The reader was cancelled: the generator saw it and is finished.
            self._finish()
            raise
        except Exception as exc:
            self._finish()
            if not isinstance(exc, _Abort):
                log.exception("unexpected error in local stream")
            self._error = _error(self._context, exc)
            raise self._error from None
        serialize = self._serialize
        return serialize(item) if serialize is not None else item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            item = await self.read()
            if item is EOF:
                return
            yield item

    def _finish(self) -> None:
        self._finished = True
        self._context._done = True

    def cancel(self) -> bool:
        """Ends the call: closes the servicer's generator (its `finally` runs) in a task."""
        if self._finished:
            return False
        self._finish()
        self._error = _rpc_error(grpc.StatusCode.CANCELLED, (), "Locally cancelled by application!")
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            self._closer = asyncio.get_running_loop().create_task(aclose())
        return True

    def done(self) -> bool:
        return self._finished

    def cancelled(self) -> bool:
        return self._error is not None and self._error.code() is grpc.StatusCode.CANCELLED

    async def wait_closed(self) -> None:
        """Waits until a cancelled call's generator has finished (its `finally` ran)."""
        if self._closer is not None:
            await self._closer


class LocalUnaryStream(_LocalMethod):
    """`channel.unary_stream(...)`: `call = method(request, metadata=..., timeout=...)`."""

    _kind = "unary_stream"

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> LocalStreamCall:
        if self._channel.closed:
            raise _closed_error()
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        context = LocalContext(metadata or (), deadline)
        parse = self._parse
        message = parse(request) if parse is not None else request
        return LocalStreamCall(self._behaviour(message, context), context, self._serialize)


class LocalChannel:
    """Calls the registered servicers in process; see the module docstring."""

    def __init__(self, registrations: Iterable[Registration]) -> None:
        collector = _Collector()
        for add, servicer in registrations:
            add(servicer, collector)
        self._handlers = collector.handlers
        self.closed = False

    @property
    def methods(self) -> list[str]:
        return sorted(self._handlers)

    def _handler(self, method: str, kind: str) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            raise ValueError(f"no servicer registered for {method}")
        if getattr(handler, kind) is None:
            raise ValueError(f"{method} is not a {kind} method")
        return handler

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        **_options: Any,
    ) -> LocalUnaryUnary:
        return LocalUnaryUnary(
            self,
            method,
            self._handler(method, "unary_unary"),
            objects_in=request_serializer is not None,
            objects_out=response_deserializer is not None,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        **_options: Any,
    ) -> LocalUnaryStream:
        return LocalUnaryStream(
            self,
            method,
            self._handler(method, "unary_stream"),
            objects_in=request_serializer is not None,
            objects_out=response_deserializer is not None,
        )

    async def close(self, grace: float | None = None) -> None:
        """New calls fail as on a closed grpc.aio channel; calls in flight finish."""
        self.closed = True

    async def __aenter__(self) -> LocalChannel:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
