"""Bus subject names shared by the services.

`user_subject(user)` carries everything addressed to one user's devices: chat_service's
fan-out-on-write events and live signals, and presence_service's typing signals (as
`ConversationEvent`s with `typing_changed`). Every event stream of that user
(chat_service/streams.py) subscribes it. `conversation_subject(conversation)` carries the events
of a conversation that fans out on read.

Plain ids pass as they are; the rest (and every id starting with "x") is hex-encoded behind an
"x", so no two ids share a subject: subject tokens must not contain '.', '*', '>' or spaces.
"""

from __future__ import annotations

import re

_PLAIN_TOKEN = re.compile(r"^[A-Za-wyz0-9_-][A-Za-z0-9_-]{0,63}$")


def _token(raw: str) -> str:
    return raw if _PLAIN_TOKEN.match(raw) else "x" + raw.encode().hex()


def user_subject(user_id: str) -> str:
    return f"chatmesh.user.{_token(user_id)}"


def conversation_subject(conversation_id: str) -> str:
    return f"chatmesh.conv.{_token(conversation_id)}"
