"""NATS subject semantics, for every bus: which subjects a filter matches, and what is valid.

A subject is tokens joined by '.'. In a filter, a `*` token matches exactly one token and a `>`
token (last only) matches one or more trailing tokens. Both buses check subjects and filters
here before using them, so a subject the in-process bus takes is one NATS takes too, and
`matches` is what nats-server does for a subscription or a consumer filter.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from chatmesh_common.subjects import EVENTS_SUBJECTS

_BAD_CHARS = frozenset(" \t\r\n")


def _tokens(subject: str, what: str) -> list[str]:
    if not subject:
        raise ValueError(f"{what} must not be empty")
    tokens = subject.split(".")
    for token in tokens:
        if not token:
            raise ValueError(f"{what} {subject!r} has an empty token")
        if _BAD_CHARS.intersection(token):
            raise ValueError(f"{what} {subject!r} contains whitespace")
    return tokens


def check_subject(subject: str) -> str:
    """A subject to publish on: tokens, no wildcard."""
    for token in _tokens(subject, "subject"):
        if "*" in token or ">" in token:
            raise ValueError(f"subject {subject!r} must not contain wildcards")
    return subject


@functools.lru_cache(maxsize=4096)
def filter_tokens(pattern: str) -> tuple[str, ...]:
    """The tokens of a valid filter; ValueError names what is wrong with an invalid one."""
    tokens = _tokens(pattern, "filter")
    for i, token in enumerate(tokens):
        if token in ("*", ">"):
            if token == ">" and i != len(tokens) - 1:
                raise ValueError(f"filter {pattern!r}: '>' may only be the last token")
        elif "*" in token or ">" in token:
            raise ValueError(f"filter {pattern!r}: a wildcard must be a whole token")
    return tuple(tokens)


def check_filter(pattern: str) -> str:
    filter_tokens(pattern)
    return pattern


def matches(pattern: str, subject: str) -> bool:
    """Whether `subject` (no wildcards) is one of the subjects of filter `pattern`."""
    return tokens_match(filter_tokens(pattern), subject.split("."))


def tokens_match(pattern: Sequence[str], subject: Sequence[str]) -> bool:
    for i, token in enumerate(pattern):
        if token == ">":
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(pattern) == len(subject)


def within(pattern: str, outer: str) -> bool:
    """Whether every subject of filter `pattern` is also a subject of filter `outer`."""
    inner, bound = filter_tokens(pattern), filter_tokens(outer)
    for i, token in enumerate(bound):
        if token == ">":
            return len(inner) > i
        if i >= len(inner) or inner[i] == ">" or (token != "*" and token != inner[i]):
            return False
    return len(inner) == len(bound)


def check_consumer_name(name: str) -> str:
    """A durable consumer name: what JetStream accepts (no '.', wildcards or whitespace)."""
    if not name or len(name) > 64:
        raise ValueError("a consumer name must have 1 to 64 characters")
    if _BAD_CHARS.intersection(name) or any(c in name for c in ".*>/\\"):
        raise ValueError(f"consumer name {name!r} must not contain '.', '*', '>', '/' or spaces")
    return name


def check_durable_subject(subject: str) -> str:
    """A subject for `publish_durable`: under EVENTS_SUBJECTS (the stream takes nothing else)."""
    if not matches(EVENTS_SUBJECTS, check_subject(subject)):
        raise ValueError(f"durable subject {subject!r} is not under {EVENTS_SUBJECTS}")
    return subject


def durable_filters(filter_subjects: str | Sequence[str]) -> tuple[str, ...]:
    """The filters of a durable consumer: at least one, each under EVENTS_SUBJECTS."""
    filters = (filter_subjects,) if isinstance(filter_subjects, str) else tuple(filter_subjects)
    if not filters:
        raise ValueError("a durable consumer needs at least one filter subject")
    for pattern in filters:
        if not within(check_filter(pattern), EVENTS_SUBJECTS):
            raise ValueError(f"filter {pattern!r} is not under {EVENTS_SUBJECTS}")
    return tuple(dict.fromkeys(filters))
