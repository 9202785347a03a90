"""`chatmesh chat USER` driven through its stdin against a real `chatmesh dev`: the list with
unread counts, history on /open, sending, and the other user's live messages, typing and
presence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chatmesh.events.v1 import events_pb2

from tests.gateway.client import GatewayClient

from .conftest import Dev, chatmesh

pytestmark = pytest.mark.timeout(90)


def _chat_args(dev: Dev, user: str) -> list[str]:
    return ["chat", user, "--url", dev.ws_url, "--data-dir", str(dev.data_dir)]


async def _message_from(
    client: GatewayClient, sender: str, timeout_s: float = 15.0
) -> events_pb2.ConversationEvent:
    """The next message_created event sent by `sender` (receipts and the like skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await client.next_event(timeout_s)
            created = event.message_created.message
            if event.WhichOneof("payload") == "message_created" and created.sender_id == sender:
                return event


async def test_chat_lists_opens_sends_and_shows_live_events(dev: Dev) -> None:
    """What a person sees typing into `chatmesh chat`, step by step."""
    alice = await dev.connect("chat-alice")
    try:
        answer = await alice.call(
            "create_conversation", kind="CONVERSATION_KIND_DIRECT", member_ids=["chat-bob"]
        )
        cid = answer.create_conversation.conversation.conversation.conversation_id
        await alice.call("send_message", conversation_id=cid, client_msg_id="m1", body="hi bob")
        async with chatmesh(*_chat_args(dev, "chat-bob")) as chat:
            await chat.line_with("signed in as chat-bob")
            listed = await chat.line_with(cid)
            assert listed.split()[:5] == ["1", "chat-alice", "[direct]", "(1", "unread)"]
            await chat.type("/open chat-alice")
            await chat.line_with("--- chat-alice (direct) ---")
            assert (await chat.line()).endswith(" chat-alice: hi bob")

            await alice.call("typing", conversation_id=cid, typing=True)
            await chat.line_with("* chat-alice is typing...")
            await alice.call("send_message", conversation_id=cid, client_msg_id="m2", body="there?")
            assert (await chat.line_with("there?")).endswith(" chat-alice: there?")
            await chat.type("/who")
            assert await chat.line_with("* chat-alice is") == "* chat-alice is online"

            await chat.type("yes, here")
            reply = await _message_from(alice, "chat-bob")
            assert reply.message_created.message.body == "yes, here"
            await chat.type("/quit")
            assert await chat.wait() == 0
    finally:
        await alice.ws.close()


async def test_a_piped_script_runs_in_order_and_its_end_quits(dev: Dev) -> None:
    """Each line waits for the answers of the one before: /new then a message to it."""
    carol = await dev.connect("pipe-carol")
    try:
        async with chatmesh(*_chat_args(dev, "pipe-dave")) as chat:
            assert chat.process.stdin is not None
            script = "/new direct pipe-carol\nhello from a pipe\n"
            async with asyncio.timeout(30):
                out, err = await chat.process.communicate(script.encode())
            assert chat.process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert "--- pipe-carol (direct) ---" in lines
        assert lines[-1].endswith(" pipe-dave: hello from a pipe")
        event = await _message_from(carol, "pipe-dave")
        assert event.message_created.message.body == "hello from a pipe"
    finally:
        await carol.ws.close()


async def test_a_refused_token_is_the_gateways_reason_and_a_failure(
    dev: Dev, tmp_path: Path
) -> None:
    """Signed with another secret: the error frame, then one line on stderr, exit status 1."""
    (tmp_path / "jwt-secret").write_text("another-secret-of-at-least-thirty-two-bytes\n")
    args = ["chat", "mallory", "--url", dev.ws_url, "--data-dir", str(tmp_path)]
    async with chatmesh(*args) as chat:
        async with asyncio.timeout(30):
            out, err = await chat.process.communicate(b"/list\n")
    assert chat.process.returncode == 1
    assert out.decode().startswith("! UNAUTHENTICATED: ")
    assert err.decode().splitlines() == [
        "chatmesh: chat: the gateway closed the connection (1008: authentication failed)"
    ]
