"""`chatmesh tail USER`: a user's event stream as JSON lines, for debugging.

It subscribes to chat_service's EventService over gRPC (not the WebSocket edge): that stream is
what every gateway consumes, so tail shows the events exactly as chat_service emits them (typing
included, as presence publishes it into the same stream), needs no gateway (`chatmesh serve
chat` alone is enough) and shows the `caughtUp` marker that separates the replay from live
events. Each line is the proto3 JSON of one SubscribeEventsResponse.

`--since SEQ` replays every event after SEQ, in the `--conversation`s given or else in every
conversation of the user. If the stream breaks after it started, tail subscribes again from the
last seq it printed per conversation (and the baselines of `caughtUp` for the others), so no
event of the break is missed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import grpc
from chatmesh.chat.v1 import chat_service_pb2, chat_service_pb2_grpc, types_pb2
from chatmesh.events.v1 import event_service_pb2, event_service_pb2_grpc
from google.protobuf import json_format

from chatmesh_common.tls import TlsSettings, open_channel

from .terminal import CommandError, unreachable

Metadata = tuple[tuple[str, str], ...]

TARGET_HELP = "--target or CHATMESH_CHAT_TARGET names the chat service"
# Between resubscriptions after a break (chat_service restarting).
RESUBSCRIBE_DELAY_S = 0.5


@dataclass(frozen=True)
class TailOptions:
    user: str
    target: str
    # Mints a token for each subscription.
    token: Callable[[], str]
    device: str = "tail"
    conversations: Sequence[str] = ()
    since: int | None = None
    # CHATMESH_TLS_* of the deployment: TLS (and a client certificate) to the chat service.
    tls: TlsSettings = field(default_factory=TlsSettings)


def event_line(item: event_service_pb2.SubscribeEventsResponse) -> str:
    """One JSON line: the item's proto3 JSON, compact."""
    return json.dumps(json_format.MessageToDict(item), separators=(",", ":"), ensure_ascii=False)


def wanted(item: event_service_pb2.SubscribeEventsResponse, conversations: Sequence[str]) -> bool:
    """Whether --conversation lets the item through (caughtUp always passes)."""
    if not conversations or item.WhichOneof("item") != "event":
        return True
    return item.event.conversation_id in conversations


class _Positions:
    """The last seq seen per conversation: where a new subscription resumes."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    def saw(self, item: event_service_pb2.SubscribeEventsResponse) -> None:
        if item.WhichOneof("item") == "caught_up":
            for baseline in item.caught_up.baselines:
                self.seqs.setdefault(baseline.conversation_id, baseline.seq)
            for revoked in item.caught_up.revoked_conversation_ids:
                self.seqs.pop(revoked, None)
        elif item.event.seq:
            cid = item.event.conversation_id
            self.seqs[cid] = max(self.seqs.get(cid, 0), item.event.seq)

    def cursors(self) -> list[types_pb2.ConversationCursor]:
        return [
            types_pb2.ConversationCursor(conversation_id=cid, seq=seq)
            for cid, seq in self.seqs.items()
        ]


async def _all_conversations(channel: grpc.aio.Channel, metadata: Metadata) -> list[str]:
    stub = chat_service_pb2_grpc.ChatServiceStub(channel)
    ids: list[str] = []
    token = ""
    while True:
        page = await stub.ListConversations(
            chat_service_pb2.ListConversationsRequest(page_size=200, page_token=token),
            metadata=metadata,
            timeout=10,
        )
        ids += [view.conversation.conversation_id for view in page.conversations]
        token = page.next_page_token
        if not token:
            return ids


def _failure(exc: grpc.aio.AioRpcError, target: str) -> CommandError:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # gRPC's details end with the cause ("...: Connection refused").
        cause = (exc.details() or "").rpartition(": ")[2]
        return unreachable("the chat service", target, cause, TARGET_HELP)
    return CommandError(f"{exc.code().name}: {exc.details()}")


async def tail(options: TailOptions, out: TextIO = sys.stdout) -> None:
    """Prints the user's events until cancelled; CommandError when the server refuses."""
    positions = _Positions()
    async with open_channel(options.target, options.tls) as channel:
        try:
            if options.since is not None:
                conversations = list(options.conversations) or await _all_conversations(
                    channel, _metadata(options)
                )
                positions.seqs = dict.fromkeys(conversations, options.since)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, options.target) from None
        events = event_service_pb2_grpc.EventServiceStub(channel)
        started = broken = False
        while True:
            request = event_service_pb2.SubscribeEventsRequest(
                cursors=positions.cursors(), device_id=options.device
            )
            # A fresh token each time: a long tail outlives the first one.
            call = events.SubscribeEvents(request, metadata=_metadata(options))
            try:
                async for item in call:
                    if broken:
                        _note("subscribed again")
                        broken = False
                    started = True
                    positions.saw(item)
                    if wanted(item, options.conversations):
                        out.write(event_line(item) + "\n")
                        out.flush()
                reason = "the server ended the stream"
            except grpc.aio.AioRpcError as exc:
                # Only a stream that once worked is followed across a restart of the server.
                if not started or exc.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise _failure(exc, options.target) from None
                reason = f"the stream broke ({exc.details()})"
            finally:
                call.cancel()
            if not broken:
                _note(f"{reason}; subscribing again from the last seqs seen (Ctrl-C stops)")
                broken = True
            await asyncio.sleep(RESUBSCRIBE_DELAY_S)


def _metadata(options: TailOptions) -> Metadata:
    return (("authorization", f"Bearer {options.token()}"),)


def _note(message: str) -> None:
    print(f"chatmesh: tail: {message}", file=sys.stderr, flush=True)
