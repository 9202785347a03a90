"""Fixtures of the media tests: a session SeaweedFS (S3), and a started filesystem blob store
with its HTTP server on a free port. A test using `s3_server` carries @pytest.mark.s3."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatmesh_common.clock import ManualClock
from media_service.blobs.fs import FsBlobStore
from media_service.blobs.fs_http import FsBlobHttpServer
from tests.servers.binaries import require_binary
from tests.servers.ports import free_port
from tests.servers.seaweedfs import SeaweedServer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS with a signed-only S3 gateway for the session (same port on restart())."""
    server = SeaweedServer(require_binary("weed", "s3"), tmp_path_factory.mktemp("seaweedfs"))
    with server:
        yield server


@dataclass
class FsBlobs:
    store: FsBlobStore
    server: FsBlobHttpServer
    clock: ManualClock
    root: Path


@pytest.fixture
async def fs_blobs(tmp_path: Path) -> AsyncIterator[FsBlobs]:
    """An opened FsBlobStore on a tmp dir, served by an FsBlobHttpServer on a free port."""
    clock = ManualClock()
    port = free_port()
    store = FsBlobStore(tmp_path / "blobs", b"test-secret", f"http://127.0.0.1:{port}", clock)
    await store.open()
    server = FsBlobHttpServer(store, "127.0.0.1", port)
    await server.start()
    try:
        yield FsBlobs(store, server, clock, tmp_path / "blobs")
    finally:
        await server.stop()
        await store.close()
