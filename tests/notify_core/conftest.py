"""Fixtures for notify_service tests: real chat, presence and notify servers on one bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .support import Harness, start_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in start_harness(tmp_path):
        yield h
