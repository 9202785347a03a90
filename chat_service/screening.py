"""The pre-delivery screen of channel messages: a verdict before the durable write.

`Chat` asks its `MessageScreen` about every new message and every edit in a channel before the
store sees it, so a rejected message is never stored, acknowledged or delivered, and a held one
is stored aside for a moderator (not in the log) until released or dropped. The built-in
`Blocklist` refuses configured words and links to configured domains and holds messages with
configured held words (CHATMESH_MODERATION_BLOCKED_WORDS / _BLOCKED_DOMAINS / _HELD_WORDS); with
all empty it allows everything.
A deployment may pass its own screen (a classifier, an external service) to `Chat`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from .store.base import ConversationRecord


@dataclass(frozen=True, slots=True)
class Verdict:
    """Allowed; rejected with the reason the sender is told (naming the rule); or (`held`)
    held for a moderator's review, with the rule that held it."""

    allowed: bool
    reason: str = ""
    held: bool = False


ALLOW: Final = Verdict(True)


def reject(reason: str) -> Verdict:
    return Verdict(False, reason)


def hold(reason: str) -> Verdict:
    """Not refused, not delivered: stored aside until a moderator releases or drops it. A new
    message only; an edit the screen would hold is refused (an edit is not held)."""
    return Verdict(False, reason, held=True)


class MessageScreen(Protocol):
    async def check(self, conversation: ConversationRecord, sender_id: str, body: str) -> Verdict:
        """The verdict on a message (or an edit's new body) about to be written."""
        ...


class AllowAll:
    async def check(self, conversation: ConversationRecord, sender_id: str, body: str) -> Verdict:
        return ALLOW


# A host name in a link or bare ("example.com/x", "https://a.example.com"): labels and a TLD.
_HOST = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://)?(?:[^\s/@]+@)?((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63})\b",
    re.IGNORECASE,
)


def _normal_domain(domain: str) -> str:
    return domain.strip().lower().strip(".")


def _word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    wanted = sorted({w.strip().casefold() for w in words if w.strip()}, key=len, reverse=True)
    # Whole words or phrases, any case: not inside a longer word ("class" is not "ass").
    if not wanted:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, wanted)) + r")(?!\w)", re.IGNORECASE)


class Blocklist:
    """Refuses messages with a blocked word (whole words, any case) or a link to a blocked
    domain or one of its subdomains; holds for review those with a held word."""

    def __init__(
        self,
        words: Iterable[str] = (),
        domains: Iterable[str] = (),
        held_words: Iterable[str] = (),
    ) -> None:
        self._words = _word_pattern(words)
        self._held_words = _word_pattern(held_words)
        self._domains = frozenset(d for d in map(_normal_domain, domains) if d)

    @property
    def enabled(self) -> bool:
        return bool(self._words is not None or self._held_words is not None or self._domains)

    async def check(self, conversation: ConversationRecord, sender_id: str, body: str) -> Verdict:
        if self._domains:
            for match in _HOST.finditer(body):
                blocked = self._blocked_domain(match.group(1).lower())
                if blocked:
                    return reject(f"body links to the blocked domain {blocked} (blocked domains)")
        if self._words is not None:
            found = self._words.search(body)
            if found is not None:
                return reject(f"body contains the blocked word {found.group(0)!r} (blocked words)")
        if self._held_words is not None:
            found = self._held_words.search(body)
            if found is not None:
                return hold(f"body contains the held word {found.group(0)!r} (held words)")
        return ALLOW

    def _blocked_domain(self, host: str) -> str:
        labels = host.split(".")
        for start in range(len(labels) - 1):
            candidate = ".".join(labels[start:])
            if candidate in self._domains:
                return candidate
        return ""
