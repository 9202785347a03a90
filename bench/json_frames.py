"""CPU per hot JSON frame in the gateway: the fast path of gateway_ws/fast_json.py against the
generic json_format codec it replaces, on the frames of one send in the `groups` scenario.

    python -m bench.json_frames [--number 20000] [--repeat 7]

Pure in-process code (no sockets, no server), so unlike the end-to-end scenarios the figures
hardly move when other work shares the machine: each is the best of `--repeat` timings of
`--number` calls, in microseconds per frame. Both paths are checked to give the same result first.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable, Sequence

from chatmesh.chat.v1 import chat_service_pb2, types_pb2
from chatmesh.events.v1 import events_pb2
from google.protobuf import json_format

from gateway_ws import frames

_SEND_TEXT = json.dumps(
    {
        "requestId": "q12",
        "sendMessage": {
            "conversationId": "01JEXAMPLE0000000000000000",
            "clientMsgId": "0-q12",
            "body": "b|1764770000.123456|" + "x" * 44,
        },
    },
    separators=(",", ":"),
)
_MARK_READ_TEXT = json.dumps(
    {
        "requestId": "q13",
        "markRead": {"conversationId": "01JEXAMPLE0000000000000000", "seq": "1234"},
    },
    separators=(",", ":"),
)


def _message() -> types_pb2.Message:
    message = types_pb2.Message(
        conversation_id="01JEXAMPLE0000000000000000",
        seq=1234,
        message_id="01JMESSAGE0000000000000000",
        sender_id="g17",
        kind=types_pb2.MESSAGE_KIND_TEXT,
        body="b|1764770000.123456|" + "x" * 44,
        client_msg_id="0-q12",
    )
    message.created_at.seconds, message.created_at.nanos = 1_764_770_000, 123_456_000
    return message


def _generic_text(obj: dict[str, object]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def cases() -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(frame, fast path, generic path) for each hot frame."""
    message = _message()
    ack = chat_service_pb2.SendMessageResponse(message=message).SerializeToString()
    ack_slot = frames.SERVER_SLOTS["send_message"]
    event = events_pb2.ConversationEvent(
        conversation_id=message.conversation_id, seq=message.seq, actor_id=message.sender_id
    )
    event.occurred_at.CopyFrom(message.created_at)
    event.message_created.message.CopyFrom(message)
    receipt = events_pb2.ConversationEvent(conversation_id=message.conversation_id)
    receipt.receipt_moved.user_id, receipt.receipt_moved.last_read_seq = "g18", 1234

    def generic_ack() -> str:
        answer = ack_slot.message_class.FromString(ack)
        return _generic_text({"requestId": "q12", "sendMessage": json_format.MessageToDict(answer)})

    return [
        ("decode sendMessage", lambda: frames.decode_client_frame(_SEND_TEXT),
         lambda: frames.decode_text_generic(_SEND_TEXT)),
        ("decode markRead", lambda: frames.decode_client_frame(_MARK_READ_TEXT),
         lambda: frames.decode_text_generic(_MARK_READ_TEXT)),
        ("encode ack (sendMessage answer)",
         lambda: frames.encode_payload("q12", ack_slot, ack, False), generic_ack),
        ("encode event (messageCreated)", lambda: frames.encode_event(b"", event, False),
         lambda: _generic_text({"event": json_format.MessageToDict(event)})),
        ("encode event (receiptMoved)", lambda: frames.encode_event(b"", receipt, False),
         lambda: _generic_text({"event": json_format.MessageToDict(receipt)})),
    ]  # fmt: skip


def _best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.json_frames", description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print("| frame | json_format µs | fast path µs | ratio |")
    print("|---|---|---|---|")
    for name, fast, generic in cases():
        if fast() != generic():
            print(f"{name}: the two paths differ", file=sys.stderr)
            return 1
        slow_us = _best_us(generic, args.number, args.repeat)
        fast_us = _best_us(fast, args.number, args.repeat)
        print(f"| {name} | {slow_us:.1f} | {fast_us:.1f} | {slow_us / fast_us:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
