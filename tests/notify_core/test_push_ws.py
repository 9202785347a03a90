"""Push from the app's side, through the WebSocket edge of `chatmesh dev`: a browser registers
its Web Push subscription with the `register_device` frame, goes offline, and the local push
service decrypts a push for the next message; notification settings travel as frames too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from notify_service.providers.vapid import generate_vapid_keys
from tests.media.support import start_dev
from tests.servers.webpush import LocalPushService

pytestmark = pytest.mark.timeout(60)


async def test_web_push_registered_over_the_socket_reaches_the_offline_browser(
    tmp_path: Path,
) -> None:
    pem, app_key = generate_vapid_keys()
    key_file = tmp_path / "vapid.pem"
    key_file.write_text(pem)
    env = {
        "CHATMESH_VAPID_KEY_FILE": str(key_file),
        "CHATMESH_VAPID_SUBJECT": "mailto:ops@example.org",
        # The local push service speaks plain HTTP; real ones are HTTPS only.
        "CHATMESH_WEBPUSH_ALLOW_HTTP": "true",
    }
    async with LocalPushService(tls=False) as push, start_dev(tmp_path / "dev", env) as dev:
        subscription = push.subscribe(app_key)
        alice, bob = await dev.connect("alice"), await dev.connect("bob")
        registered = await bob.call(
            "register_device",
            target={
                "platform": "PLATFORM_WEBPUSH",
                "token": subscription.endpoint,
                "keys": subscription.keys,
            },
        )
        assert registered.register_device.device.target.token == subscription.endpoint
        listed = await bob.call("list_devices")
        assert [d.target.platform for d in listed.list_devices.devices] == [pb.PLATFORM_WEBPUSH]
        settings = await bob.call(
            "update_notification_settings", preview="PREVIEW_LEVEL_SENDER_ONLY"
        )
        assert settings.update_notification_settings.preview == pb.PREVIEW_LEVEL_SENDER_ONLY
        cid = await alice.create_group("bob", title="launch")
        await bob.close()  # bob's only device goes offline

        await alice.call(
            "send_message", conversation_id=cid, client_msg_id="k1", body="we ship at noon"
        )
        async with asyncio.timeout(15):
            while not subscription.deliveries:  # noqa: ASYNC110 (the push service has no event)
                await asyncio.sleep(0.05)
        payload = subscription.deliveries[0].payload
        assert payload["data"]["conversation_id"] == cid
        assert "noon" not in str(payload)  # sender only: no message text leaves the server
        assert "alice" in str(payload)
