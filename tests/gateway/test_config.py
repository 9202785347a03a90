"""GatewayConfig from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from gateway_ws.config import ConfigError, GatewayConfig


def test_the_jwt_secret_is_required() -> None:
    """Without CHATMESH_JWT_SECRET the gateway refuses to start."""
    with pytest.raises(ConfigError, match="CHATMESH_JWT_SECRET"):
        GatewayConfig.from_env({})


def test_defaults_follow_the_spec_limits() -> None:
    """64 KiB frames, 20 sends/s with bursts of 40, 10 bad frames in 10 s."""
    config = GatewayConfig.from_env({"CHATMESH_JWT_SECRET": "s"})
    assert (config.host, config.port, config.chat_target) == ("127.0.0.1", 8080, "127.0.0.1:50051")
    assert config.max_frame_bytes == 64 * 1024
    assert (config.send_rate_per_s, config.send_burst) == (20.0, 40)
    assert (config.bad_frame_limit, config.bad_frame_window_s) == (10, 10.0)
    assert config.outbound_queue_max == 1000


def test_settings_are_read_from_the_environment() -> None:
    """Host, port, target and limits come from CHATMESH_* variables."""
    config = GatewayConfig.from_env(
        {
            "CHATMESH_JWT_SECRET": "s",
            "CHATMESH_WS_HOST": "0.0.0.0",
            "CHATMESH_WS_PORT": "9000",
            "CHATMESH_CHAT_TARGET": "chat:50051",
            "CHATMESH_WS_SEND_BURST": "80",
            "CHATMESH_WS_METRICS_PORT": "-1",
        }
    )
    assert (config.host, config.port, config.chat_target) == ("0.0.0.0", 9000, "chat:50051")
    assert config.send_burst == 80
    assert config.metrics_port == -1


def test_a_malformed_number_names_its_variable() -> None:
    """A bad value is refused with the variable's name."""
    with pytest.raises(ConfigError, match="CHATMESH_WS_PORT"):
        GatewayConfig.from_env({"CHATMESH_JWT_SECRET": "s", "CHATMESH_WS_PORT": "eighty"})


def test_limits_must_be_positive() -> None:
    """A zero limit is a configuration error."""
    with pytest.raises(ConfigError, match="outbound_queue_max"):
        GatewayConfig(jwt_secret="s", outbound_queue_max=0)


def test_the_config_is_frozen() -> None:
    """Settings are read once and never change."""
    config = GatewayConfig(jwt_secret="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
