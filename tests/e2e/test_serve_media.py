"""`chatmesh serve media` in cluster mode as a real process, with `chatmesh serve chat` (Scylla
store, NATS) and `chatmesh serve gateway` in front of both: an app sends a photo through S3
(SeaweedFS), the other member gets its metadata and downloads it without GPS; a second media
replica on the same S3, keyspace and NATS serves the same media (records are shared). SIGTERM
stops media_service with exit status 0. Cluster mode on the fs blob store does not start."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from chatmesh.media.v1 import media_service_pb2 as media_pb
from chatmesh.media.v1 import media_service_pb2_grpc
from PIL import ExifTags, Image

from chatmesh_common.auth import auth_metadata, issue_token
from tests.gateway.client import GatewayClient
from tests.media.support import fetch, jpeg_with_gps, send, upload_bytes
from tests.servers.cassandra import CassandraServer
from tests.servers.nats import NatsServer
from tests.servers.ports import free_port
from tests.servers.seaweedfs import SeaweedServer
from tests.servers.services import (
    REPO,
    ChatServiceProcess,
    GatewayProcess,
    MediaServiceProcess,
    ServiceProcess,
)

SECRET = "serve-media-user-secret-of-at-least-32-bytes"
SERVICE_SECRET = "serve-media-service-secret-of-at-least-32-bytes"


def scylla_env(server: CassandraServer, keyspace: str) -> dict[str, str]:
    return {
        "CHATMESH_SCYLLA_CONTACT_POINTS": server.host,
        "CHATMESH_SCYLLA_PORT": str(server.port),
        "CHATMESH_SCYLLA_DC": server.datacenter,
        "CHATMESH_SCYLLA_KEYSPACE": keyspace,
        "CHATMESH_SCYLLA_REPLICATION": "SimpleStrategy:1",
    }


def s3_env(server: SeaweedServer, bucket: str) -> dict[str, str]:
    access_key, secret_key = server.credentials
    return {
        "CHATMESH_MEDIA_BLOBS": "s3",
        "CHATMESH_S3_ENDPOINT": server.url,
        "CHATMESH_S3_REGION": server.region,
        "CHATMESH_S3_BUCKET": bucket,
        "CHATMESH_S3_ACCESS_KEY": access_key,
        "CHATMESH_S3_SECRET_KEY": secret_key,
    }


@dataclass
class Cluster:
    chat: ChatServiceProcess
    media: MediaServiceProcess
    replica: MediaServiceProcess
    gateway: GatewayProcess

    async def connect(self, user: str) -> GatewayClient:
        return await GatewayClient.connect(self.gateway.url, issue_token(SECRET, user))


@pytest.fixture
async def cluster(
    tmp_path: Path,
    cassandra_server: CassandraServer,
    nats_server: NatsServer,
    s3_server: SeaweedServer,
) -> AsyncIterator[Cluster]:
    """chat_service, two media_service replicas and a gateway, each a `chatmesh serve` process;
    chat and media share one keyspace (their tables differ) and one NATS."""
    keyspace = f"serve_media_{uuid.uuid4().hex[:12]}"
    common = {
        "CHATMESH_MODE": "cluster",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": nats_server.url,
        **scylla_env(cassandra_server, keyspace),
    }
    # Ports are fixed at construction, so each process can be told where the others answer.
    chat_port, media_port, replica_port = (free_port() for _ in range(3))
    media_env = {
        **common,
        **s3_env(s3_server, f"media-{secrets.token_hex(4)}"),
        "CHATMESH_MEDIA_RECORDS_STORE": "scylla",
        "CHATMESH_CHAT_TARGET": f"127.0.0.1:{chat_port}",
    }
    chat = ChatServiceProcess(
        {
            **common,
            "CHATMESH_STORE": "scylla",
            # One node and a keyspace of its own: no separate `chatmesh migrate` step.
            "CHATMESH_SCYLLA_MIGRATE_ON_OPEN": "1",
            "CHATMESH_MEDIA_TARGET": f"127.0.0.1:{media_port}",
        },
        tmp_path / "chat.log",
        chat_port,
    )
    media = MediaServiceProcess(media_env, tmp_path / "media.log", media_port)
    replica = MediaServiceProcess(media_env, tmp_path / "media-replica.log", replica_port)
    gateway = GatewayProcess(
        {
            "CHATMESH_JWT_SECRET": SECRET,
            "CHATMESH_CHAT_TARGET": chat.target,
            "CHATMESH_MEDIA_TARGET": media.target,
        },
        tmp_path / "gateway.log",
    )
    try:
        await chat.start(wait_s=90)
        # One after the other: the replica finds media's migrations done, not half-claimed.
        await media.start(wait_s=60)
        await replica.start(wait_s=60)
        await gateway.start()
        yield Cluster(chat, media, replica, gateway)
    finally:
        await gateway.stop()
        await replica.close()
        await media.close()
        await chat.close()


async def _stops_cleanly(process: ServiceProcess) -> None:
    await process.stop()
    assert process.process.process is not None
    assert process.process.process.returncode == 0, process.process.log_tail()


def _without_gps(jpeg: bytes) -> bool:
    exif = Image.open(io.BytesIO(jpeg)).getexif()
    return ExifTags.IFD.GPSInfo not in exif and not exif.get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.cql
@pytest.mark.nats
@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_photo_through_the_cluster(cluster: Cluster) -> None:
    """create_upload, the presigned POST to S3, complete_upload READY, send with the
    attachment, bob's event carries attachment_info, bob downloads it without GPS, from either
    media replica; then SIGTERM stops media_service with exit status 0."""
    alice, bob = await cluster.connect("alice"), await cluster.connect("bob")
    cid = await alice.create_group("bob")
    data = jpeg_with_gps()
    created = await alice.call(
        "create_upload",
        conversation_id=cid,
        file_name="beach.jpg",
        size_bytes=len(data),
        content_type="image/jpeg",
    )
    upload = created.create_upload.upload
    assert upload.method == "POST"  # S3's POST policy, not the fs store's PUT
    posted = await upload_bytes(upload, data)
    assert posted.status_code in (200, 201, 204), posted.text
    media_id = created.create_upload.media.media_id

    done = await alice.call("complete_upload", media_id=media_id, timeout_s=30)
    media = done.complete_upload.media
    assert media.state == media_pb.MEDIA_STATE_READY, media.reject_detail
    assert (media.attachment.width, media.attachment.height) == (64, 48)

    sent = await send(alice, cid, "look", [media_id], "photo-1")
    seq = sent.send_message.message.seq
    event = await bob.next_event(timeout_s=15)
    while event.WhichOneof("payload") != "message_created":
        event = await bob.next_event(timeout_s=15)
    message = event.message_created.message
    assert list(message.attachments) == [media_id]
    [shown] = message.attachment_info
    assert (shown.file_name, shown.content_type) == ("beach.jpg", "image/jpeg")
    assert (shown.width, shown.height, shown.blurhash) == (64, 48, media.attachment.blurhash)
    assert "http" not in str(message)  # metadata only, never a URL

    link = await bob.call("get_download_url", media_id=media_id, message_seq=seq)
    original = await fetch(link.get_download_url.url)
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/jpeg"
    assert _without_gps(original.content)

    # The replica never saw this upload: it finds the record in the shared keyspace.
    stub = media_service_pb2_grpc.MediaServiceStub(cluster.replica.channel)
    try:
        again = await stub.GetDownloadUrl(
            media_pb.GetDownloadUrlRequest(media_id=media_id, message_seq=seq),
            metadata=auth_metadata(issue_token(SECRET, "bob")),
            timeout=15,
        )
    except grpc.aio.AioRpcError as exc:
        pytest.fail(f"{exc.code()}: {exc.details()}\n{cluster.replica.process.log_tail()}")
    from_replica = await fetch(again.url)
    assert from_replica.status_code == 200
    assert from_replica.content == original.content

    await alice.close()
    await bob.close()
    await _stops_cleanly(cluster.media)
    await _stops_cleanly(cluster.replica)


def test_cluster_mode_with_the_fs_blob_store_is_refused_at_start_up(tmp_path: Path) -> None:
    """CHATMESH_MODE=cluster with CHATMESH_MEDIA_BLOBS=fs (the other stores set for a cluster):
    one line on stderr, exit status 2, before anything is opened."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
    env = {
        **clean,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")) if p
        ),
        "CHATMESH_MODE": "cluster",
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_SERVICE_SECRET": SERVICE_SECRET,
        "CHATMESH_MEDIA_BLOBS": "fs",
        "CHATMESH_MEDIA_DIR": str(tmp_path / "blobs"),
        "CHATMESH_MEDIA_RECORDS_STORE": "scylla",
        "CHATMESH_SCYLLA_CONTACT_POINTS": "127.0.0.1",
        "CHATMESH_BUS": "nats",
        "CHATMESH_NATS_URLS": "nats://127.0.0.1:1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "chatmesh_launcher", "serve", "media"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "chatmesh: media_service: CHATMESH_MODE=cluster refuses the fs blob store;"
        " set CHATMESH_MEDIA_BLOBS=s3"
    ]
    assert not (tmp_path / "blobs").exists()
