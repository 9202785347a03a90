"""Hypothesis strategies for any protobuf message, read from its descriptor: random and extreme
field values (empty, huge, negative where the type allows, unknown enum numbers, odd unicode).

`FUZZ_EXAMPLES` is the examples per test: a short profile by default (CI), more with
`CHATMESH_FUZZ_EXAMPLES=100000`.
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("CHATMESH_FUZZ_EXAMPLES", "150"))

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Ids that exist in the fuzzed fixtures, so some inputs reach past "not found".
KNOWN_IDS = ["alice", "bob", "default", "phone"]


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, 0, 1, -1, 2**62, 2**31) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["", " ", "\x00", "🙂" * 40, "a" * 129, "a" * 20_000, *KNOWN_IDS]),
        st.text(max_size=64),
    )


def _scalar(field: FieldDescriptor, known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        enum_type: Any = field.enum_type
        numbers = [v.number for v in enum_type.values]
        return st.one_of(st.sampled_from(numbers), _integers(-(2**31), 2**31 - 1))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    ids = known.get(field.name)
    return st.one_of(st.sampled_from(ids), _strings()) if ids else _strings()


def messages(
    descriptor: Any,
    cls: type[Message],
    depth: int = 2,
    known: dict[str, list[str]] | None = None,
) -> st.SearchStrategy[Message]:
    """Messages of `cls` with a random subset of fields set (one member per oneof)."""
    known = known or {}

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        oneofs_done: set[str] = set()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            oneof = field.containing_oneof
            if oneof is not None:
                if oneof.name in oneofs_done:
                    continue
                oneofs_done.add(oneof.name)
            _fill(draw, message, field, depth, known)
        return message

    return build()


def _fill(
    draw: st.DrawFn,
    message: Message,
    field: FieldDescriptor,
    depth: int,
    known: dict[str, list[str]],
) -> None:
    repeated = field.is_repeated
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub: Any = field.message_type
        if depth <= 0 or sub.GetOptions().map_entry:
            return
        target = getattr(message, field.name)
        count = draw(st.integers(0, 3)) if repeated else 1
        for _ in range(count):
            value = draw(
                messages(sub, type(target.add() if repeated else target), depth - 1, known)
            )
            if repeated:
                target[-1].CopyFrom(value)
            else:
                target.CopyFrom(value)
        return
    values = _scalar(field, known)
    if repeated:
        getattr(message, field.name).extend(draw(st.lists(values, max_size=4)))
    else:
        setattr(message, field.name, draw(values))
