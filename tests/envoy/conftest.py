"""Fixtures of the edge tests: a test CA and certificate, the Envoy binary, and one small stack
(`chatmesh serve chat` on SQLite, `chatmesh serve gateway`, Envoy in front) shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.binaries import require_binary
from tests.servers.envoy import EdgeStack, TlsFiles, make_tls

SECRET = "envoy-test-user-secret-of-at-least-32-bytes"
SERVICE_SECRET = "envoy-test-service-secret-of-at-least-32-bytes"


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    return require_binary("envoy", "envoy")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for localhost / 127.0.0.1 that it signed."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, envoy_binary: str, tls_files: TlsFiles
) -> Iterator[EdgeStack]:
    """`serve chat` (SQLite) and `serve gateway`, with Envoy routing to both."""
    stack = EdgeStack(
        envoy_binary, tmp_path_factory.mktemp("edge"), tls_files, SECRET, SERVICE_SECRET
    )
    with stack:
        yield stack
