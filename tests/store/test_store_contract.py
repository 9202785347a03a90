"""Runs the ChatStore contract against every backend of the `store_backend` fixture."""

from __future__ import annotations

import pytest

from .contract import ChatStoreContract
from .moderation_contract import ModerationContract

pytestmark = pytest.mark.timeout(30)


class TestChatStoreContract(ChatStoreContract):
    """The contract suite, once per store backend."""


class TestModerationContract(ModerationContract):
    """Reports, bans and suspensions, once per store backend."""
