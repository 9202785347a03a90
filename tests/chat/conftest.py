"""Fixtures for chat_service tests: a real server on a free port and clients for named users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from .support import ChatHarness, Client


@pytest.fixture
async def chat_server(tmp_path: Path) -> AsyncIterator[ChatHarness]:
    """chat_service in this test's loop, on port 0, with a fresh data dir; restartable."""
    harness = ChatHarness(tmp_path / "chat-data")
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture
def client(chat_server: ChatHarness) -> Callable[[str], Client]:
    """`client("alice")`: stubs (.chat, .events) and auth metadata (.md) for user alice."""
    return chat_server.client
