"""The pure rules of notify_service: who wants a push, backoff, and previews."""

from __future__ import annotations

from chatmesh.chat.v1 import types_pb2

from notify_service.consumer import wants_push
from notify_service.delivery import Backoff
from notify_service.payloads import collapse_key
from notify_service.store.base import ConversationSetting, Level

CHANNEL = types_pb2.CONVERSATION_KIND_CHANNEL
GROUP = types_pb2.CONVERSATION_KIND_GROUP


def test_levels_and_mentions() -> None:
    """Defaults: all in groups, mentions in channels; NONE never; MENTIONS only mentioned."""
    default = ConversationSetting("c")
    assert wants_push(default, GROUP, False, 0)
    assert not wants_push(default, CHANNEL, False, 0)
    assert wants_push(default, CHANNEL, True, 0)
    assert not wants_push(ConversationSetting("c", Level.NONE), GROUP, True, 0)
    assert wants_push(ConversationSetting("c", Level.MENTIONS), GROUP, True, 0)
    assert not wants_push(ConversationSetting("c", Level.MENTIONS), GROUP, False, 0)
    assert wants_push(ConversationSetting("c", Level.ALL), CHANNEL, False, 0)


def test_mute_wins_over_mentions_until_it_ends() -> None:
    """A mute silences mentions too; a timed mute ends at its time."""
    forever = ConversationSetting("c", Level.ALL, muted_forever=True)
    assert not wants_push(forever, GROUP, True, 100)
    timed = ConversationSetting("c", Level.ALL, muted_until=100.0)
    assert not wants_push(timed, GROUP, True, 99)
    assert wants_push(timed, GROUP, True, 100)


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    """Try n waits within [b*2^(n-1)/2, b*2^(n-1)], capped, and at least Retry-After."""
    backoff = Backoff(base_s=1.0, max_s=10.0, max_attempts=5)
    assert backoff.delay(1, None, 0.0) == 0.5
    assert backoff.delay(1, None, 1.0) == 1.0
    assert backoff.delay(3, None, 1.0) == 4.0
    assert backoff.delay(3, None, 0.0) == 2.0
    assert backoff.delay(10, None, 1.0) == 10.0
    assert backoff.delay(1, 30.0, 0.5) == 30.0


def test_collapse_key_is_per_conversation_and_short() -> None:
    assert collapse_key("a") != collapse_key("b")
    assert len(collapse_key("x" * 500)) <= 64
