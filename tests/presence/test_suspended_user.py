"""A suspended user's presence writes that reach others (typing, a custom status text) are
refused by presence_service, asked of chat_service at each call: `chatmesh serve chat` and
`chatmesh serve presence` as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from chatmesh.moderation.v1 import moderation_service_pb2 as mpb
from chatmesh.presence.v1 import presence_service_pb2 as ppb
from chatmesh.presence.v1 import presence_service_pb2_grpc

from tests.chat.moderation_support import Moderator
from tests.chat.support import SECRET, SERVICE_SECRET, Client, expect_code
from tests.servers.services import ChatServiceProcess, PresenceServiceProcess

pytestmark = pytest.mark.timeout(60)

DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass
class Services:
    chat: ChatServiceProcess
    presence: Any  # a PresenceServiceStub (the generated stubs are untyped)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """chat_service and presence_service processes; presence asks chat's AccessService."""
    secrets = {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_SERVICE_SECRET": SERVICE_SECRET}
    chat = ChatServiceProcess(
        {**secrets, "CHATMESH_DATA_DIR": str(tmp_path / "data")}, tmp_path / "chat.log"
    )
    presence = PresenceServiceProcess(
        # Typing limits are tested elsewhere: here a user types several times a second.
        {**secrets, "CHATMESH_CHAT_TARGET": chat.target, "CHATMESH_TYPING_PER_SECOND": "100"},
        tmp_path / "presence.log",
    )
    channel: grpc.aio.Channel | None = None
    try:
        await chat.start()
        await presence.start()
        channel = grpc.aio.insecure_channel(presence.target)
        yield Services(chat, presence_service_pb2_grpc.PresenceServiceStub(channel))
    finally:
        if channel is not None:
            await channel.close(None)
        await presence.stop()
        await chat.close()


async def test_suspended_user_cannot_type_or_set_a_status_text(services: Services) -> None:
    """After SuspendUser, bob's typing and custom status text are PERMISSION_DENIED naming the
    suspension; a plain status change and clearing the text still work, alice types on; after
    UnsuspendUser bob types again."""
    alice, bob = Client(services.chat, "alice"), Client(services.chat, "bob")
    moderator = Moderator(services.chat)
    cid = await alice.group(bob)

    def typing(who: Client) -> Any:
        return services.presence.SendTyping(
            ppb.SendTypingRequest(conversation_id=cid, typing=True), metadata=who.md, timeout=10
        )

    def set_status(who: Client, text: str) -> Any:
        return services.presence.SetStatus(
            ppb.SetStatusRequest(status=ppb.USER_STATUS_AWAY, custom_text=text),
            metadata=who.md,
            timeout=10,
        )

    await typing(bob)
    await set_status(bob, "around")
    await moderator.moderation.SuspendUser(
        mpb.SuspendUserRequest(user_id="bob", reason="spam wave"), metadata=moderator.md
    )
    for refused in (typing(bob), set_status(bob, "buy now")):
        details = await expect_code(DENIED, refused)
        assert "suspended" in details and "spam wave" in details
    cleared = await set_status(bob, "")
    assert cleared.presence.custom_text == ""
    await typing(alice)
    await moderator.moderation.UnsuspendUser(
        mpb.UnsuspendUserRequest(user_id="bob"), metadata=moderator.md
    )
    await typing(bob)
