"""run_detached: a blocking clean-up call is waited for, but never past its bound."""

from __future__ import annotations

import threading

import pytest

from chatmesh_common.detached import run_detached


async def test_a_call_that_returns_is_waited_for() -> None:
    ran = threading.Event()
    assert await run_detached(ran.set, timeout_s=5, what="quick call")
    assert ran.is_set()


async def test_a_call_that_never_returns_is_left_behind() -> None:
    release = threading.Event()
    try:
        assert not await run_detached(release.wait, timeout_s=0.2, what="stuck call")
    finally:
        release.set()


async def test_a_failing_call_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise RuntimeError("driver exploded")

    assert await run_detached(fail, timeout_s=5, what="failing call")
    assert "failing call failed" in caplog.text
