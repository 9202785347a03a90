"""Behind Envoy the gateway's peer is the proxy: with CHATMESH_WS_TRUSTED_PROXIES the per-address
limits count the client named by the hops trusted proxies appended to X-Forwarded-For, and a
client cannot choose its address by sending the header itself."""

from __future__ import annotations

import pytest

from chatmesh_common.settings import ConfigError
from gateway_ws.admission import client_address, trusted_networks
from gateway_ws.config import GatewayConfig

ENVOY = trusted_networks("10.0.0.0/8, 127.0.0.1")


def test_the_peer_counts_without_trusted_proxies() -> None:
    assert client_address("203.0.113.5", "198.51.100.1", ()) == "203.0.113.5"


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address("10.1.2.3", "198.51.100.7", ENVOY) == "198.51.100.7"
    # Hops of trusted proxies are skipped; what the client wrote itself comes before them.
    assert client_address("10.1.2.3", "1.2.3.4, 198.51.100.7, 10.9.9.9", ENVOY) == "198.51.100.7"


def test_an_untrusted_peer_cannot_pick_its_address() -> None:
    assert client_address("203.0.113.5", "1.2.3.4", ENVOY) == "203.0.113.5"
    assert client_address("10.1.2.3", None, ENVOY) == "10.1.2.3"


def test_a_malformed_proxy_list_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="CHATMESH_WS_TRUSTED_PROXIES"):
        GatewayConfig.from_env(
            {"CHATMESH_JWT_SECRET": "x" * 32, "CHATMESH_WS_TRUSTED_PROXIES": "not-an-ip"}
        )
