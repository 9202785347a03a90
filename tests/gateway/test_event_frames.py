"""Event frames are encoded once per event and encoding, and payloads parsed once per publish."""

from __future__ import annotations

from chatmesh.events.v1 import events_pb2

from chat_service.streams import parse_shared
from gateway_ws import frames


def _event(seq: int, body: str = "hi", cid: str = "c1") -> events_pb2.ConversationEvent:
    event = events_pb2.ConversationEvent(conversation_id=cid, seq=seq)
    event.message_created.message.body = body
    return event


def test_one_frame_per_event_and_encoding() -> None:
    cache = frames.EventFrames(max_entries=3)
    text = cache.encode(_event(5), binary=False)
    assert cache.encode(_event(5), binary=False) is text
    assert text == frames.encode_event(b"", _event(5), binary=False)
    data = cache.encode(_event(5), binary=True)
    assert isinstance(data, bytes) and data == frames.encode_event(b"", _event(5), binary=True)
    assert len(cache) == 2
    # seq 0 signals are keyed by their content too
    assert cache.encode(_event(0, "a"), True) != cache.encode(_event(0, "b"), True)
    assert len(cache) == 3  # bounded: the oldest entry went
    assert cache.encode(_event(0, "b"), True) == frames.encode_event(b"", _event(0, "b"), True)


def test_parse_shared_parses_a_payload_once() -> None:
    payload = _event(7, "shared").SerializeToString()
    first = parse_shared(payload)
    assert parse_shared(bytes(payload)) is first
    assert first.message_created.message.body == "shared"
    assert parse_shared(_event(8).SerializeToString()) is not first
