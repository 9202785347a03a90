"""Reading back what reached the durable event stream, for assertions."""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors

from chatmesh_common.bus.nats import NatsBus
from chatmesh_common.subjects import conversation_filter


async def stored_seqs(bus: NatsBus, conversation_id: str) -> list[int]:
    """The seqs of a conversation's log events in the stream, in stream order."""
    sub = await bus.js.pull_subscribe(
        conversation_filter(conversation_id), stream=bus.settings.stream
    )
    seqs: list[int] = []
    try:
        while True:
            try:
                messages = await sub.fetch(1000, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in messages:
                msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                cid, _, seq = msg_id.rpartition(":")
                if cid == conversation_id and seq.isdigit():
                    seqs.append(int(seq))
                await msg.ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return seqs


async def wait_stored(
    bus: NatsBus, conversation_id: str, wanted: set[int], timeout_s: float = 10.0
) -> list[int]:
    """Polls until every seq in `wanted` is in the stream; returns what is there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        seqs = await stored_seqs(bus, conversation_id)
        if wanted <= set(seqs) or loop.time() > deadline:
            return seqs
        await asyncio.sleep(0.2)
