"""Pushes through the real webhook provider, built from its setting, to a local receiver that
verifies every signature: the push arrives signed with ids and the preview; a 410 prunes the
target."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from notify_service.providers.settings import ProviderSettings
from tests.servers.webhook import LocalWebhookReceiver

from .support import start_harness

pytestmark = pytest.mark.timeout(30)

SECRET = "whsec-notify-core-0123456789"


async def test_webhook_push_arrives_signed_and_gone_prunes(tmp_path: Path) -> None:
    """An offline member's webhook gets the signed push; a 410 removes another's target."""
    async with LocalWebhookReceiver(SECRET) as receiver:
        async for harness in start_harness(
            tmp_path, configured_providers=True, providers=ProviderSettings(webhook_secret=SECRET)
        ):
            alice, bob, carol = (harness.client(u) for u in ("alice", "bob", "carol"))
            for who in (bob, carol):
                await harness.stub.RegisterDevice(
                    pb.RegisterDeviceRequest(
                        target=pb.PushTarget(
                            platform=pb.PLATFORM_WEBHOOK, token=receiver.url(f"/{who.user_id}")
                        )
                    ),
                    metadata=who.md,
                )
            receiver.gone("/carol")
            conversation = await alice.group(bob, carol, title="ops")
            sent = await harness.send(alice, conversation, "deploy done")
            async with asyncio.timeout(10):
                while True:
                    listed = await harness.stub.ListDevices(
                        pb.ListDevicesRequest(), metadata=carol.md
                    )
                    if receiver.received and not listed.devices:
                        break
                    await asyncio.sleep(0.05)
            (got,) = receiver.received
            assert got.path == "/bob"
            assert (got.payload["title"], got.payload["body"]) == ("ops", "alice: deploy done")
            assert got.payload["data"]["seq"] == str(sent.message.seq)
            assert receiver.rejected == []
