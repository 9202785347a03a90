"""Devices and settings over NotifyService with user tokens."""

from __future__ import annotations

import grpc
import pytest
from chatmesh.notify.v1 import notify_service_pb2 as pb

from .support import Harness

pytestmark = pytest.mark.timeout(30)


async def test_register_list_and_unregister(harness: Harness) -> None:
    """A device's target is listed for its user only and removed by UnregisterDevice."""
    phone, tablet = harness.client("bob", "phone"), harness.client("bob", "tablet")
    alice = harness.client("alice")
    await harness.register(phone, "tok-1")
    await harness.register(tablet, "tok-2")
    listed = await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=phone.md)
    assert [(d.device_id, d.target.token) for d in listed.devices] == [
        ("phone", "tok-1"), ("tablet", "tok-2"),
    ]  # fmt: skip
    assert not (await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=alice.md)).devices
    removed = await harness.stub.UnregisterDevice(
        pb.UnregisterDeviceRequest(device_id="tablet"), metadata=phone.md
    )
    assert removed.removed
    again = await harness.stub.UnregisterDevice(pb.UnregisterDeviceRequest(), metadata=tablet.md)
    assert not again.removed
    listed = await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=phone.md)
    assert [d.device_id for d in listed.devices] == ["phone"]


async def test_reregistering_a_token_moves_it(harness: Harness) -> None:
    """The same token registered by another device (or user) moves there: never two owners."""
    old, new = harness.client("bob", "old"), harness.client("carol", "new")
    await harness.register(old, "shared-token")
    await harness.register(new, "shared-token")
    assert not (await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=old.md)).devices
    listed = await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=new.md)
    assert [(d.device_id, d.target.token) for d in listed.devices] == [("new", "shared-token")]
    await harness.register(new, "rotated")
    listed = await harness.stub.ListDevices(pb.ListDevicesRequest(), metadata=new.md)
    assert [d.target.token for d in listed.devices] == ["rotated"]


async def test_bad_targets_are_invalid_argument(harness: Harness) -> None:
    """A target needs a platform and a token; web push needs an https endpoint and keys."""
    bob = harness.client("bob")
    for target in (
        pb.PushTarget(platform=pb.PLATFORM_APNS),
        pb.PushTarget(token="abc"),
        pb.PushTarget(platform=pb.PLATFORM_WEBPUSH, token="https://push.example/x"),
        pb.PushTarget(platform=pb.PLATFORM_WEBHOOK, token="not-a-url"),
        pb.PushTarget(platform=pb.PLATFORM_WEBHOOK, token="https://user:pw@hooks.example/x"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.stub.RegisterDevice(
                pb.RegisterDeviceRequest(target=target), metadata=bob.md
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_settings_round_trip(harness: Harness) -> None:
    """UpdateNotificationSettings stores the preview and per-conversation settings; defaults
    remove one."""
    bob = harness.client("bob")
    mute = pb.ConversationSettings(conversation_id="c1", muted_forever=True)
    level = pb.ConversationSettings(conversation_id="c2", level=pb.NOTIFY_LEVEL_MENTIONS)
    updated = await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(
            preview=pb.PREVIEW_LEVEL_GENERIC, conversations=[mute, level]
        ),
        metadata=bob.md,
    )
    assert updated.preview == pb.PREVIEW_LEVEL_GENERIC
    assert [c.conversation_id for c in updated.conversations] == ["c1", "c2"]
    await harness.stub.UpdateNotificationSettings(
        pb.UpdateNotificationSettingsRequest(
            conversations=[pb.ConversationSettings(conversation_id="c1")]
        ),
        metadata=bob.md,
    )
    got = await harness.stub.GetNotificationSettings(
        pb.GetNotificationSettingsRequest(), metadata=bob.md
    )
    assert got.preview == pb.PREVIEW_LEVEL_GENERIC
    assert [(c.conversation_id, c.level) for c in got.conversations] == [
        ("c2", pb.NOTIFY_LEVEL_MENTIONS)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.GetNotificationSettings(pb.GetNotificationSettingsRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
