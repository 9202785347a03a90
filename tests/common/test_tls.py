"""chatmesh_common.tls: gRPC servers over TLS and mutual TLS refuse what they must, and a bad
certificate setting is one configuration line at start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatmesh_common.grpc_server import GrpcServer, start_grpc_server
from chatmesh_common.settings import ConfigError
from chatmesh_common.tls import TlsSettings, open_channel
from tests.servers.certs import Certs, make_certs
from tests.servers.services import REPO

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def server_tls(certs: Certs, client_auth: bool) -> TlsSettings:
    return TlsSettings(
        cert_file=str(certs.service.cert),
        key_file=str(certs.service.key),
        ca_file=str(certs.ca),
        client_auth=client_auth,
    )


async def serving(target: str, tls: TlsSettings) -> bool:
    """Whether a health check through `open_channel` with these settings gets SERVING."""
    async with open_channel(target, tls) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def tls_server(certs: Certs) -> AsyncIterator[GrpcServer]:
    server = await start_grpc_server("127.0.0.1:0", [], [], tls=server_tls(certs, False))
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def mtls_server(certs: Certs) -> AsyncIterator[GrpcServer]:
    server = await start_grpc_server("127.0.0.1:0", [], [], tls=server_tls(certs, True))
    try:
        yield server
    finally:
        await server.stop(0)


async def test_tls_server_answers_a_client_trusting_its_ca(
    tls_server: GrpcServer, certs: Certs
) -> None:
    """A channel given the CA reaches a TLS server."""
    assert await serving(f"127.0.0.1:{tls_server.port}", TlsSettings(ca_file=str(certs.ca)))


async def test_tls_server_refuses_a_plaintext_client(tls_server: GrpcServer) -> None:
    """A plaintext channel gets UNAVAILABLE from a TLS server."""
    assert not await serving(f"127.0.0.1:{tls_server.port}", TlsSettings())


async def test_tls_client_refuses_a_server_from_another_ca(tmp_path: Path, certs: Certs) -> None:
    """A channel trusting only the deployment's CA does not talk to a stranger's server."""
    stranger = TlsSettings(cert_file=str(certs.stranger.cert), key_file=str(certs.stranger.key))
    server = await start_grpc_server("127.0.0.1:0", [], [], tls=stranger)
    try:
        assert not await serving(f"127.0.0.1:{server.port}", TlsSettings(ca_file=str(certs.ca)))
    finally:
        await server.stop(0)


async def test_mutual_tls_server_answers_a_service_presenting_its_certificate(
    mtls_server: GrpcServer, certs: Certs
) -> None:
    """Under mutual TLS a channel with the service certificate and the CA gets through."""
    assert await serving(f"127.0.0.1:{mtls_server.port}", server_tls(certs, True))


async def test_mutual_tls_server_refuses_a_client_without_a_certificate(
    mtls_server: GrpcServer, certs: Certs
) -> None:
    """A TLS channel that presents no client certificate is refused by a mutual TLS server."""
    assert not await serving(f"127.0.0.1:{mtls_server.port}", TlsSettings(ca_file=str(certs.ca)))


async def test_mutual_tls_server_refuses_a_certificate_from_another_ca(
    mtls_server: GrpcServer, certs: Certs
) -> None:
    """A client certificate the CA did not sign is refused."""
    stranger = TlsSettings(
        cert_file=str(certs.stranger.cert),
        key_file=str(certs.stranger.key),
        ca_file=str(certs.ca),
        client_auth=True,
    )
    assert not await serving(f"127.0.0.1:{mtls_server.port}", stranger)


def test_no_settings_is_plaintext() -> None:
    """Nothing set: no server credentials, no channel credentials, no wss."""
    tls = TlsSettings.from_env({})
    assert tls.server_credentials() is None
    assert tls.channel_credentials() is None
    assert tls.server_ssl_context() is None


def test_a_missing_certificate_file_names_its_setting(tmp_path: Path, certs: Certs) -> None:
    """A certificate file that is not there is a ConfigError naming CHATMESH_TLS_CERT_FILE."""
    env = {
        "CHATMESH_TLS_CERT_FILE": str(tmp_path / "absent.crt"),
        "CHATMESH_TLS_KEY_FILE": str(certs.service.key),
    }
    with pytest.raises(ConfigError, match=r"CHATMESH_TLS_CERT_FILE: cannot read .*absent\.crt"):
        TlsSettings.from_env(env)


def test_a_key_of_another_certificate_names_the_key_setting(certs: Certs) -> None:
    """A key that does not belong to the certificate is refused at start, not at a handshake."""
    env = {
        "CHATMESH_TLS_CERT_FILE": str(certs.service.cert),
        "CHATMESH_TLS_KEY_FILE": str(certs.stranger.key),
    }
    with pytest.raises(ConfigError, match=r"CHATMESH_TLS_KEY_FILE: .* is not the key of"):
        TlsSettings.from_env(env)


def test_half_configured_settings_are_refused(certs: Certs) -> None:
    """A certificate without its key, or client auth without a CA, is a ConfigError."""
    with pytest.raises(ConfigError, match="set both CHATMESH_TLS_CERT_FILE and"):
        TlsSettings(cert_file=str(certs.service.cert))
    with pytest.raises(ConfigError, match="CHATMESH_TLS_CLIENT_AUTH needs"):
        TlsSettings(
            cert_file=str(certs.service.cert), key_file=str(certs.service.key), client_auth=True
        )


async def test_serve_with_a_missing_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """`chatmesh serve chat` with a missing certificate file: one line naming it, status 2."""
    env = {
        "PYTHONPATH": f"{REPO}:{REPO / 'gen'}",
        "CHATMESH_JWT_SECRET": "tls-test-secret-of-at-least-thirty-two-bytes",
        "CHATMESH_DATA_DIR": str(tmp_path / "data"),
        "CHATMESH_GRPC_BIND": "127.0.0.1:0",
        "CHATMESH_METRICS_PORT": "-1",
        "CHATMESH_TLS_CERT_FILE": str(tmp_path / "absent.crt"),
        "CHATMESH_TLS_KEY_FILE": str(tmp_path / "absent.key"),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chatmesh_launcher", "serve", "chat"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CHATMESH_TLS_CERT_FILE" in lines[0] and "absent.crt" in lines[0]
    assert not (tmp_path / "data").exists(), "the store was opened before the config was read"
