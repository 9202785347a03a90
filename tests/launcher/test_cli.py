"""The `chatmesh` command as a person meets it: clear refusals, one-line bind errors, --version."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatmesh_common.auth import ServiceTokenVerifier, TokenVerifier
from chatmesh_launcher.cli import main

SECRET = "cli-test-secret-of-at-least-thirty-two-bytes"


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    code = exit_.value.code
    return code if isinstance(code, int) else 1


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["token", ""], "USER must not be empty"),
        (["token", "   "], "USER must not be empty"),
        (["token", "alice", "--ttl", "0"], "--ttl must be a positive"),
        (["token", "alice", "--ttl", "-5"], "--ttl must be a positive"),
        (["token", "alice", "--device", ""], "--device must not be empty"),
    ],
)
def test_token_refuses_bad_arguments_with_the_rule(
    argv: list[str], rule: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATMESH_JWT_SECRET", SECRET)
    assert _run(argv) == 2
    captured = capsys.readouterr()
    assert rule in captured.err
    assert captured.out == ""


def test_token_without_a_secret_refuses_instead_of_making_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a directory dev never used, it says so rather than signing with a new secret."""
    monkeypatch.delenv("CHATMESH_JWT_SECRET", raising=False)
    data_dir = tmp_path / "never-used"
    assert _run(["token", "alice", "--data-dir", str(data_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not data_dir.exists()


def test_token_says_which_secret_signed_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHATMESH_JWT_SECRET", raising=False)
    (tmp_path / "jwt-secret").write_text(SECRET + "\n")
    assert _run(["token", "alice", "--data-dir", str(tmp_path), "--device", "cli"]) == 0
    captured = capsys.readouterr()
    assert str(tmp_path / "jwt-secret") in captured.err
    identity = TokenVerifier(SECRET).verify(captured.out.strip())
    assert (identity.user_id, identity.device_id) == ("alice", "cli")


def test_token_with_a_scope_is_a_service_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--scope signs a service token with the service secret (an operator's token)."""
    monkeypatch.delenv("CHATMESH_SERVICE_SECRET", raising=False)
    service_secret = "cli-test-service-secret-of-thirty-two-bytes"
    (tmp_path / "service-secret").write_text(service_secret + "\n")
    argv = ["token", "ops", "--scope", "notify.admin", "--data-dir", str(tmp_path)]
    assert _run(argv) == 0
    captured = capsys.readouterr()
    assert str(tmp_path / "service-secret") in captured.err
    identity = ServiceTokenVerifier(service_secret).verify(captured.out.strip())
    assert (identity.service, identity.scopes) == ("ops", frozenset({"notify.admin"}))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("chatmesh ")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("flag", ["--grpc", "--ws", "--metrics"])
def test_a_busy_port_is_one_line_naming_the_address_and_the_flag(
    flag: str, taken_port: int, tmp_path: Path
) -> None:
    """No traceback: the address, why, and what moves it; exit status 2."""
    ports = {name: f"127.0.0.1:{_free_port()}" for name in ("--grpc", "--ws", "--metrics")}
    ports[flag] = f"127.0.0.1:{taken_port}"
    argv = ["dev", "--data-dir", str(tmp_path / "data")]
    for name, address in ports.items():
        argv += [name, address]
    env = {**os.environ, "CHATMESH_JWT_SECRET": SECRET, "CHATMESH_LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, "-m", "chatmesh_launcher", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{taken_port}" in lines[0]
    assert flag in lines[0]
    assert "Traceback" not in result.stderr
