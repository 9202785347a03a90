"""Fixtures of the web client tests: `chatmesh dev` in this process on free ports and a headless
Debian chromium driven by Playwright (tests marked `browser`; a missing chromium fails in CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.media.support import Dev, start_dev
from tests.servers.binaries import require_binary


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    async with start_dev(tmp_path) as running:
        yield running


# Offline: without these, Chromium keeps dialing Google's hosts (updates, sync, QUIC probes),
# which a closed network may let hang instead of refusing.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = require_binary("chromium", "browser")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()
