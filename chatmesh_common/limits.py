"""Every limit chatmesh enforces, defined once with its default (SPEC "Limits" and the rest).

Services take a `Limits` (the defaults are `LIMITS`) and check requests against it; going over a
limit is an error naming the field, never a silent truncation. The settings mechanism makes each
field configurable from the environment; the field comments are their meanings.
"""

from __future__ import annotations

from dataclasses import dataclass

# Seqs are uint64 on the wire; stores keep them in signed 64 bits. Nothing lies beyond this one.
# A property of the storage format, not a setting.
MAX_SEQ = 1 << 62
# SPEC "Limits": the most a token's expiry may be stretched by clock skew.
MAX_TOKEN_LEEWAY_S = 10.0
# SPEC 8: typing signals expire after at most this long.
MAX_TYPING_TTL_S = 6.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits. Sizes are bytes, durations seconds, counts items."""

    # Any id a client sends (conversation, user, client_msg_id, media, connection, device).
    max_id_chars: int = 128
    # A conversation title.
    max_title_chars: int = 256
    # Media ids on one message.
    max_attachments: int = 10
    # Distinct users one message may mention.
    max_mentions: int = 50
    # A message body, in bytes of its UTF-8 encoding.
    max_body_bytes: int = 16 * 1024
    # Members of a group, owner included (channels are unlimited).
    max_group_members: int = 1000
    # History and conversation list pages: the size when none is asked for, and the largest.
    default_page: int = 50
    max_page: int = 200
    # Member list pages.
    default_member_page: int = 200
    max_member_page: int = 1000
    # User ids in one AccessService question (FilterPresenceAudience.subject_user_ids).
    max_access_subjects: int = 1000
    # User ids in one presence call (GetPresence, Watch).
    max_presence_users: int = 500
    # A presence status text.
    max_custom_text_chars: int = 100
    # Typing signals per device per second (also the burst).
    typing_per_second: float = 2.0
    # Sends per user per second, and the burst allowed above that rate.
    send_rate_per_s: float = 20.0
    send_burst: int = 40
    # One WebSocket frame from a client; server frames may be larger.
    max_frame_bytes: int = 64 * 1024
    # A client's request_id on the WebSocket.
    max_request_id_chars: int = 64
    # Users one socket may watch the presence of, in all.
    max_presence_subscriptions: int = 500
    # Bad frames within the window that close a socket as abuse.
    bad_frame_limit: int = 10
    bad_frame_window_s: float = 10.0
    # A media object.
    max_media_bytes: int = 25 * 1024 * 1024
    # Conversations one user may create per hour, and in a row (0 per hour: no limit).
    conversations_per_hour: float = 1000.0
    conversation_burst: int = 200
    # Members one user may add per hour, initial members of new conversations included, and in
    # a row (0 per hour: no limit): what stops one account from pulling thousands into groups.
    invites_per_hour: float = 20_000.0
    invite_burst: int = 10_000


LIMITS = Limits()
