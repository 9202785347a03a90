"""What the fuzz runs saw: examples per suite and the distinct refusals among them, printed at
the end of the run (tests/fuzz/conftest.py) so a long profile reports its counts."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

EXAMPLES: Counter[str] = Counter()
REFUSALS: defaultdict[str, set[str]] = defaultdict(set)

_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def example(suite: str) -> None:
    EXAMPLES[suite] += 1


def refusal(suite: str, code: str, message: str = "") -> None:
    """One refusal, by code and the rule its message names (quoted values and numbers out)."""
    REFUSALS[suite].add(f"{code}: {_VARYING.sub('_', message)[:80]}" if message else code)


def summary() -> list[str]:
    return [
        f"{suite}: {count:,} examples, {len(REFUSALS[suite])} distinct refusals"
        for suite, count in sorted(EXAMPLES.items())
    ]
