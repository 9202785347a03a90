"""The metrics of the chat stores, and the one place that times every store operation.

Every operation of the `ChatStore` Protocol, reads included, is named and timed in one
histogram, `chatmesh_store_op_seconds{store, op}`, and counted in
`chatmesh_store_op_errors_total{store, op, error}` when it raises. A store class gets this by
the `timed_operations(<store>)` class decorator, which wraps each Protocol method of the class
at the Protocol boundary: no store method times itself, and an operation added to the Protocol
is timed on every store without further code. Calls a store makes to its own helpers are not
operations and are not counted.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from .base import ChatStore

# Lifecycle calls are not operations on the data.
_LIFECYCLE = frozenset({"open", "close"})

# The operations of the Protocol, in the order it declares them: each is a label value of `op`.
OPERATIONS: tuple[str, ...] = tuple(
    name
    for name, member in vars(ChatStore).items()
    if not name.startswith("_") and name not in _LIFECYCLE and inspect.iscoroutinefunction(member)
)

STORE_OP_SECONDS = Histogram(
    "chatmesh_store_op_seconds",
    "Time of one ChatStore operation, by store and operation.",
    ["store", "op"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
STORE_OP_ERRORS = Counter(
    "chatmesh_store_op_errors_total",
    "ChatStore operations that raised, by store, operation and exception class (refusals such"
    " as NotMemberError included).",
    ["store", "op", "error"],
)
# The embedded store's group commit: one transaction carries many operations.
STORE_TXN_SECONDS = Histogram(
    "chatmesh_store_transaction_seconds",
    "Time spent in one named store transaction (a group commit counts once).",
    ["txn"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
STORE_BATCH_SIZE = Histogram(
    "chatmesh_store_group_commit_size",
    "Writes committed together in one transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

StoreClass = TypeVar("StoreClass", bound=type)


def timed_operations(store: str) -> Callable[[StoreClass], StoreClass]:
    """Class decorator: times every Protocol operation of the class under `store`."""

    def decorate(cls: StoreClass) -> StoreClass:
        for op in OPERATIONS:
            method = getattr(cls, op, None)
            if method is None or not inspect.iscoroutinefunction(method):
                raise TypeError(f"{cls.__name__}.{op} must be an async method of ChatStore")
            setattr(cls, op, _timed(store, op, method))
        return cls

    return decorate


def _timed(
    store: str, op: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    # The labelled child is looked up once, not per call: this wraps every send and read.
    seconds = STORE_OP_SECONDS.labels(store, op)

    @functools.wraps(method)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            STORE_OP_ERRORS.labels(store, op, type(exc).__name__).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    return timed
