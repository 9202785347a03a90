"""`chatmesh tail USER` against a real `chatmesh dev`: JSON lines of the user's events, a replay
with --since, the --conversation filter, a clean stop on SIGTERM or Ctrl-C, one line when the
server is not there."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import free_port

from .conftest import Dev, chatmesh, dev_process

pytestmark = pytest.mark.timeout(90)


def _tail_args(dev: Dev, user: str, *more: str) -> list[str]:
    return ["tail", user, "--target", dev.grpc_target, "--data-dir", str(dev.data_dir), *more]


async def _next_json(command: Any) -> dict[str, Any]:
    return dict(json.loads(await command.line()))


async def test_tail_prints_live_events_as_json_lines_and_stops_on_sigterm(dev: Dev) -> None:
    """Each line is one SubscribeEventsResponse in proto3 JSON; SIGTERM exits 0, quietly."""
    async with chatmesh(*_tail_args(dev, "tail-bob")) as tail:
        assert await _next_json(tail) == {"caughtUp": {}}
        alice = await dev.connect("tail-alice")
        try:
            answer = await alice.call(
                "create_conversation", kind="CONVERSATION_KIND_DIRECT", member_ids=["tail-bob"]
            )
            cid = answer.create_conversation.conversation.conversation.conversation_id
            await alice.call("send_message", conversation_id=cid, client_msg_id="m1", body="hi")
        finally:
            await alice.ws.close()
        created = await _next_json(tail)
        assert created["event"]["conversationCreated"]["conversation"]["conversationId"] == cid
        message = await _next_json(tail)
        assert message["event"]["seq"] == "1"
        assert message["event"]["messageCreated"]["message"]["body"] == "hi"
        assert await tail.stop(signal.SIGTERM) == 0
        assert await tail.stderr() == ""


async def test_since_replays_then_the_filter_keeps_one_conversation(dev: Dev) -> None:
    """--since SEQ replays after SEQ, then caughtUp; --conversation hides the others; Ctrl-C
    exits 0."""
    alice = await dev.connect("since-alice")
    try:
        kept = await alice.create_group("since-bob")
        other = await alice.create_group("since-bob")
        for n in (1, 2, 3):
            await alice.call(
                "send_message", conversation_id=kept, client_msg_id=f"k{n}", body=f"k{n}"
            )
        args = _tail_args(dev, "since-bob", "--conversation", kept, "--since", "2")
        async with chatmesh(*args) as tail:
            replayed = await _next_json(tail)  # after seq 2: k3 alone
            assert replayed["event"]["seq"] == "3"
            assert replayed["event"]["messageCreated"]["message"]["body"] == "k3"
            assert "caughtUp" in await _next_json(tail)
            await alice.call("send_message", conversation_id=other, client_msg_id="o", body="o")
            await alice.call("send_message", conversation_id=kept, client_msg_id="k4", body="k4")
            live = await _next_json(tail)
            assert live["event"]["conversationId"] == kept
            assert live["event"]["messageCreated"]["message"]["body"] == "k4"
            assert await tail.stop(signal.SIGINT) == 0
    finally:
        await alice.ws.close()


async def test_an_unreachable_server_is_one_line_naming_it(dev: Dev) -> None:
    """No traceback: the address, that it cannot be reached, and the flag that moves it."""
    target = f"127.0.0.1:{free_port()}"
    args = ["tail", "nobody", "--target", target, "--data-dir", str(dev.data_dir)]
    async with chatmesh(*args) as tail:
        assert await tail.wait(30) == 1
        lines = (await tail.stderr()).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"chatmesh: tail: cannot reach the chat service at {target}")
    assert "--target" in lines[0]


async def test_tail_follows_the_stream_across_a_server_crash(tmp_path: Path) -> None:
    """After a kill and a restart of the server, it says so on stderr, subscribes again from
    the last seq it printed, and goes on."""
    process = dev_process(tmp_path / "data")
    await asyncio.to_thread(process.start, 60)
    try:
        dev = Dev(process)
        alice = await dev.connect("alice")
        cid = await alice.create_group("bob")
        await alice.call("send_message", conversation_id=cid, client_msg_id="m1", body="m1")
        await alice.ws.close()
        async with chatmesh(*_tail_args(dev, "bob", "--since", "0")) as tail:
            replayed = await _next_json(tail)
            assert replayed["event"]["messageCreated"]["message"]["body"] == "m1"
            assert "caughtUp" in await _next_json(tail)
            await asyncio.to_thread(process.kill)  # a crash: no goodbye on the stream
            assert "subscribing again" in await tail.error_line()
            await asyncio.to_thread(process.start, 60)
            assert "subscribed again" in await tail.error_line(30)
            # The replay starts after m1 (nothing repeated), then live events go on.
            assert await _next_json(tail) == {"caughtUp": {}}
            alice = await dev.connect("alice")
            await alice.call("send_message", conversation_id=cid, client_msg_id="m2", body="m2")
            await alice.ws.close()
            after = await _next_json(tail)
            assert after["event"]["messageCreated"]["message"]["body"] == "m2"
            assert await tail.stop() == 0
    finally:
        await asyncio.to_thread(process.stop)
