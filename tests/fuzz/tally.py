"""What the fuzz runs saw: examples per suite and the distinct refusals among them, printed at
the end of the run (tests/fuzz/conftest.py) so a long profile reports its counts."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

EXAMPLES: Counter[str] = Counter()
REFUSALS: defaultdict[str, set[str]] = defaultdict(set)

_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")
# Field and frame names (createConversation, client_msg_id): the rule is the same for each.
_NAMES = re.compile(r"\b[a-z]+[A-Z_]\w*\b")


def example(suite: str) -> None:
    EXAMPLES[suite] += 1


def rule(message: str) -> str:
    """The rule a refusal names: its message before any detail (after `:` or `;`), with quoted
    values, numbers and field names left out."""
    head = re.split(r"[:;]", message, maxsplit=1)[0]
    return _NAMES.sub("_", _VARYING.sub("_", head))[:80]


def refusal(suite: str, code: str, message: str = "") -> None:
    REFUSALS[suite].add(f"{code}: {rule(message)}" if message else code)


def summary() -> list[str]:
    return [
        f"{suite}: {count:,} examples, {len(REFUSALS[suite])} distinct refusals"
        for suite, count in sorted(EXAMPLES.items())
    ]
