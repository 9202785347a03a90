"""How both stores keep a message's attachments, their metadata and its mentions: one JSON
value in the `attachments` column, so neither schema needed a new column.

Messages stored before attachment metadata existed hold a plain JSON list of media ids; they
decode to ids with no metadata and no mentions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .base import AttachmentInfo

Extras = tuple[tuple[str, ...], tuple[AttachmentInfo, ...], tuple[str, ...]]

EMPTY = "[]"


def encode(
    attachments: Sequence[str], info: Sequence[AttachmentInfo], mentions: Sequence[str]
) -> str:
    if not info and not mentions:
        return json.dumps(list(attachments))
    return json.dumps(
        {
            "ids": list(attachments),
            "info": [asdict(i) for i in info],
            "mentions": list(mentions),
        },
        separators=(",", ":"),
    )


def decode(value: str | list[Any] | None) -> Extras:
    if not value or value == EMPTY:
        return (), (), ()
    data = json.loads(value) if isinstance(value, str) else value
    if isinstance(data, list):
        return tuple(data), (), ()
    info = tuple(
        AttachmentInfo(**{**i, "thumbnails": tuple(i.get("thumbnails", ()))})
        for i in data.get("info", ())
    )
    return tuple(data.get("ids", ())), info, tuple(data.get("mentions", ()))
