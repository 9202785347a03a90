"""Runs the Bus contract against every bus of the `harness` fixture."""

from __future__ import annotations

import pytest

from .contract import BusContract

pytestmark = pytest.mark.timeout(30)


class TestBusContract(BusContract):
    """The contract suite, once per bus."""
