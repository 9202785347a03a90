"""notify_service's Prometheus metrics, per provider (platform)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUSHES = Counter(
    "chatmesh_notify_pushes_total",
    "Push attempts by provider and result (sent, retried, failed, gone, dead_lettered).",
    ["provider", "result"],
)
FAILURES = Counter(
    "chatmesh_notify_push_failures_total",
    "Push attempts a provider refused or did not answer, by provider and reason.",
    ["provider", "reason"],
)
PROVIDER_LATENCY = Histogram(
    "chatmesh_notify_provider_latency_seconds",
    "Seconds one provider call took.",
    ["provider"],
)
PUSH_LAG = Histogram(
    "chatmesh_notify_push_lag_seconds",
    "Seconds from the event's commit to the provider accepting its push.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
EVENTS = Counter(
    "chatmesh_notify_events_total", "Durable events the consumer handled, by kind.", ["kind"]
)
QUEUED = Counter(
    "chatmesh_notify_queued_total", "Pushes queued, by kind (message, clear).", ["kind"]
)
