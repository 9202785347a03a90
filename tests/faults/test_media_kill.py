"""SIGKILL of media_service while devices send: chat goes on untouched (no socket closes, text
never needs media), an upload in flight fails with UNAVAILABLE (retryable) and succeeds when retried
after the restart, and an upload completed before the kill is still downloadable after."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from chatmesh.gateway.v1 import gateway_pb2
from chatmesh.media.v1 import media_service_pb2 as media_pb
from PIL import Image

from tests.bus_nats.cluster import token
from tests.gateway.client import GatewayClient, ServerError
from tests.media.support import fetch, jpeg_with_gps, send, upload_bytes

from .check import Figures
from .load import RETRYABLE
from .profile import Profile, current_profile
from .scenario import Cluster, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.s3,
    pytest.mark.timeout(current_profile().timeout_s),
]

UPLOADER, VIEWER = "media-up", "media-view"
# A hang guard for media_service to answer again: not a timing assertion.
BACK_GUARD_S = 60.0
PHOTO = jpeg_with_gps(64, 48)
T = TypeVar("T")


async def _create(client: GatewayClient, cid: str, name: str) -> gateway_pb2.ServerFrame:
    return await client.call(
        "create_upload",
        conversation_id=cid,
        file_name=name,
        size_bytes=len(PHOTO),
        content_type="image/jpeg",
        timeout_s=30,
    )


async def _complete(client: GatewayClient, media_id: str) -> media_pb.Media:
    done = await client.call("complete_upload", media_id=media_id, timeout_s=30)
    media: media_pb.Media = done.complete_upload.media
    assert media.state == media_pb.MEDIA_STATE_READY, media.reject_detail
    return media


async def _refused(call: Awaitable[object]) -> str:
    """The error a call to the dead media_service gets: SPEC's "a dependency is down"."""
    with pytest.raises(ServerError) as refused:
        await call
    name = gateway_pb2.ErrorCode.Name(refused.value.code)
    assert refused.value.code == gateway_pb2.ERROR_CODE_UNAVAILABLE, f"while media is down: {name}"
    return name


async def _retried(call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """`call` retried while it gets a retryable status; its answer and the tries it took."""
    async with asyncio.timeout(BACK_GUARD_S):
        for tries in range(1, 10_000):
            try:
                return await call(), tries
            except ServerError as exc:
                assert exc.code in RETRYABLE, f"not retryable after the restart: {exc}"
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def _downloadable(viewer: GatewayClient, media_id: str, seq: int) -> None:
    link = await viewer.call("get_download_url", media_id=media_id, message_seq=seq, timeout_s=30)
    got = await fetch(link.get_download_url.url)
    assert got.status_code == 200, got.text
    assert Image.open(io.BytesIO(got.content)).size == (64, 48)


async def test_sigkill_of_media_fails_uploads_retryably_and_keeps_completed_ones(
    media_cluster: Cluster, profile: Profile, record_figures: Callable[[Figures], None]
) -> None:
    """media_service killed mid-load and restarted: chat loses nothing; uploads retry through."""
    doomed = media_cluster.media
    assert doomed is not None
    url = media_cluster.gateways[1].url
    extra: dict[str, float] = {}
    statuses: list[str] = []

    async def fault() -> None:
        uploader = await GatewayClient.connect(url, token(UPLOADER, "phone"), timeout_s=15)
        viewer = await GatewayClient.connect(url, token(VIEWER, "phone"), timeout_s=15)
        try:
            cid = await uploader.create_group(VIEWER, title="photos")
            # Completed and sent before the kill.
            kept = (await _create(uploader, cid, "kept.jpg")).create_upload
            await upload_bytes(kept.upload, PHOTO)
            await _complete(uploader, kept.media.media_id)
            sent = await send(uploader, cid, "kept", [kept.media.media_id], "kept-1")
            kept_seq = int(sent.send_message.message.seq)
            await _downloadable(viewer, kept.media.media_id, kept_seq)
            # In flight at the kill: created and its bytes in S3, not yet completed.
            flying = (await _create(uploader, cid, "flying.jpg")).create_upload
            await upload_bytes(flying.upload, PHOTO)
            await doomed.kill()
            statuses.append(await _refused(_complete(uploader, flying.media.media_id)))
            statuses.append(await _refused(_create(uploader, cid, "late.jpg")))
            extra["refused_while_down"] = len(statuses)
            await asyncio.sleep(profile.outage_s)
            await doomed.start()
            back_at = time.monotonic()
            _, tries = await _retried(lambda: _complete(uploader, flying.media.media_id))
            extra["media_back_s"] = time.monotonic() - back_at
            extra["complete_tries"] = tries
            late = (await _retried(lambda: _create(uploader, cid, "late.jpg")))[0].create_upload
            await upload_bytes(late.upload, PHOTO)
            await _complete(uploader, late.media.media_id)
            sent = await send(uploader, cid, "after", [flying.media.media_id], "after-1")
            await _downloadable(viewer, flying.media.media_id, int(sent.send_message.message.seq))
            await _downloadable(viewer, kept.media.media_id, kept_seq)
            assert uploader.is_open and viewer.is_open, "a socket closed while media was down"
        finally:
            await uploader.close()
            await viewer.close()

    figures = await run_fault(media_cluster, profile, "media-sigkill", fault, record_figures, extra)
    assert figures.reconnects == 0, "a socket closed while media was down"
