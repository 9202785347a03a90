"""The indexer over the durable log: at-least-once delivery is harmless, the lag is measured."""

from __future__ import annotations

import pytest
from chatmesh.chat.v1 import types_pb2
from chatmesh.events.v1 import events_pb2
from prometheus_client import REGISTRY

from chatmesh_common.bus import InProcessBus
from chatmesh_common.clock import ManualClock
from chatmesh_common.subjects import DurableKind, durable_subject
from search_service.engines.base import Query
from search_service.engines.fts5 import Fts5Engine
from search_service.indexer import Indexer

INDEX_LAG_METRIC = "chatmesh_search_index_lag_seconds"

pytestmark = pytest.mark.timeout(30)


def event(kind: str, seq: int, body: str, version: int, at: float) -> events_pb2.ConversationEvent:
    message = types_pb2.Message(
        conversation_id="c1", seq=seq, sender_id="u1", body=body, version=version
    )
    message.created_at.FromSeconds(1_000)
    built = events_pb2.ConversationEvent(conversation_id="c1", seq=seq)
    built.occurred_at.FromSeconds(int(at))
    getattr(built, kind).message.CopyFrom(message)
    return built


async def test_replayed_log_converges_and_lag_is_measured() -> None:
    clock = ManualClock(2_000.0)
    bus = InProcessBus()
    engine = Fts5Engine()
    await engine.open()
    log = [
        (DurableKind.CREATED, event("message_created", 1, "alpha beta", 1, 1_990)),
        (DurableKind.EDITED, event("message_edited", 1, "gamma", 2, 1_991)),
        (DurableKind.CREATED, event("message_created", 2, "alpha again", 1, 1_992)),
        (DurableKind.DELETED, event("message_deleted", 2, "", 2, 1_995)),
    ]
    # Every event twice, as a redelivery would bring it.
    for round_ in range(2):
        for i, (kind, item) in enumerate(log):
            await bus.publish_durable(
                durable_subject("c1", kind), item.SerializeToString(), f"{round_}-{i}"
            )
    indexer = Indexer(bus, engine, clock)
    while await indexer.run_once(timeout_s=0.05):
        pass
    found = await engine.search(Query("alpha", ["c1"]))
    assert found == []
    assert [h.seq for h in await engine.search(Query("gamma", ["c1"]))] == [1]
    assert REGISTRY.get_sample_value(INDEX_LAG_METRIC) == pytest.approx(5.0)
    await indexer.stop()
    await engine.close()
    await bus.close()
