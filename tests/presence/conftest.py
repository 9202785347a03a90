"""Presence fixtures: a backend per implementation (memory; Redis with the `redis` marker), each
on fresh state, and the chat + presence services on one port for end-to-end behaviour."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from presence_service.backends.base import PresenceBackend
from presence_service.backends.memory import MemoryPresenceBackend
from tests.servers.redis import RedisServer

from .support import PresenceHarness

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def make_backend(name: str, request: pytest.FixtureRequest) -> PresenceBackend:
    if name == "memory":
        return MemoryPresenceBackend()
    from presence_service.backends.redis import RedisPresenceBackend

    redis_server: RedisServer = request.getfixturevalue("redis_server")
    # A prefix per test: tests share one redis-server and never see each other's keys.
    return RedisPresenceBackend(redis_server.url, prefix=f"test:{uuid.uuid4().hex[:8]}:")


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[PresenceBackend]:
    """Fresh presence state on the backend named by the param."""
    store = make_backend(request.param, request)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=BACKENDS)
async def system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PresenceHarness]:
    """chat_service + AccessService + presence_service on one port, presence on a manual clock."""
    harness = PresenceHarness(tmp_path / "chat-data", make_backend(request.param, request))
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
