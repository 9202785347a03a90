"""The gateway's side of gRPC: one shared channel to chat_service, and the table that maps each
request frame to its ChatService method.

The table is built from the proto descriptors: a ClientFrame case `send_message` calls
`ChatService.SendMessage`, and its answer goes in the ServerFrame case of the same name. Requests
and answers cross the gateway as bytes (no serializer on the channel), so an answer to a binary
client is framed without being parsed. Event stream items are parsed (see subscribe_method).

The channel is a grpc.aio channel, or in `chatmesh dev` a chatmesh_common.local_channel
LocalChannel, which calls the servicers in process with the same multicallables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc
from chatmesh.chat.v1 import chat_service_pb2
from chatmesh.events.v1 import event_service_pb2
from chatmesh.media.v1 import media_service_pb2
from chatmesh.notify.v1 import notify_service_pb2
from chatmesh.search.v1 import search_service_pb2
from google.protobuf.descriptor import Descriptor

from gateway_ws import frames

CHAT_SERVICE: Final = "chatmesh.chat.v1.ChatService"
EVENT_SERVICE: Final = "chatmesh.events.v1.EventService"
MEDIA_SERVICE: Final = "chatmesh.media.v1.MediaService"
SEARCH_SERVICE: Final = "chatmesh.search.v1.SearchService"
NOTIFY_SERVICE: Final = "chatmesh.notify.v1.NotifyService"

# Options of the channel the gateway opens itself (a caller may pass its own channel).
CHANNEL_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 1024 * 1024),
    # Reconnect quickly after a chat_service restart; event streams resume on their own.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # No client-side retry machinery: it costs ~6 KiB per open event stream, streams resubscribe
    # on their own, and a failed request reaches the app as UNAVAILABLE, which SPEC says is safe
    # to retry with the same idempotency key.
    ("grpc.enable_retries", 0),
    # Notice a silently dead peer. Servers reject pings more frequent than 5 min by default.
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


# Stream errors that retrying cannot fix; after the others (UNAVAILABLE, a restart, ...) a
# stream is opened again with backoff.
FATAL_STREAM_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# The end-of-stream sentinel of grpc.aio (missing from the type stubs).
EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
_RETRY_AFTER_KEYS: Final = ("retry-after-ms", "x-retry-after-ms")


def retry_after_ms(exc: grpc.aio.AioRpcError) -> int:
    """A retry-after hint a service may put in trailing metadata (`retry-after-ms`)."""
    if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return 0
    metadata = cast(Iterable[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    for key, value in metadata:
        if key in _RETRY_AFTER_KEYS:
            try:
                return max(0, int(value if isinstance(value, str) else value.decode()))
            except ValueError:
                return 0
    return 0


SubscribeMethod = grpc.aio.UnaryStreamMultiCallable[
    event_service_pb2.SubscribeEventsRequest, event_service_pb2.SubscribeEventsResponse
]


@dataclass(frozen=True, slots=True)
class Route:
    """How one request frame reaches chat_service and how its answer is framed."""

    frame: str
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
    slot: frames.ServerSlot


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


# The services apps reach through request frames: a ClientFrame case named like a method of one
# of them (`create_upload` -> MediaService.CreateUpload) calls it.
ROUTED_SERVICES: Final = (
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"],
    media_service_pb2.DESCRIPTOR.services_by_name["MediaService"],
    search_service_pb2.DESCRIPTOR.services_by_name["SearchService"],
    # Only the user RPCs have frames: ListDeadLetters and ReplayDeadLetter are for operators.
    notify_service_pb2.DESCRIPTOR.services_by_name["NotifyService"],
)


def build_routes(
    channel: grpc.aio.Channel, elsewhere: Mapping[str, grpc.aio.Channel] | None = None
) -> dict[str, Route]:
    """Every ClientFrame case that names a method of a routed service, checked against the
    protos. A service goes to its channel in `elsewhere` (by full name), else to `channel` (all
    on one server, as in `chatmesh dev`)."""
    services = [(s, (elsewhere or {}).get(s.full_name, channel)) for s in ROUTED_SERVICES]
    client_desc = cast(Descriptor, frames.ClientFrame.DESCRIPTOR)
    routes: dict[str, Route] = {}
    for field in client_desc.oneofs_by_name["frame"].fields:
        found = [
            (s, s.methods_by_name[_camel(field.name)], ch)
            for s, ch in services
            if _camel(field.name) in s.methods_by_name
        ]
        if not found:
            continue  # a gateway-level frame: auth, ping, resume
        service, method_desc, target = found[0]
        slot = frames.SERVER_SLOTS.get(field.name)
        if (
            slot is None
            or field.message_type is None
            or method_desc.input_type.full_name != field.message_type.full_name
            or method_desc.output_type.full_name != slot.message_class.DESCRIPTOR.full_name
        ):
            raise TypeError(
                f"ClientFrame.{field.name} does not match {service.name}.{method_desc.name}"
            )
        method = target.unary_unary(
            f"/{service.full_name}/{method_desc.name}",
            request_serializer=None,
            response_deserializer=None,
        )
        routes[field.name] = Route(field.name, method, slot)
    return routes


def subscribe_method(channel: grpc.aio.Channel) -> SubscribeMethod:
    """EventService.SubscribeEvents, responses parsed: over gRPC the channel parses each item
    (the gateway would anyway, for the seqs); in process (LocalChannel) the stream's response
    objects come through as they are, never serialized. Items are read only."""
    return channel.unary_stream(
        f"/{EVENT_SERVICE}/SubscribeEvents",
        request_serializer=event_service_pb2.SubscribeEventsRequest.SerializeToString,
        response_deserializer=event_service_pb2.SubscribeEventsResponse.FromString,
    )
