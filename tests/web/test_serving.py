"""The gateway's HTTP side of the web client: static files and /dev/token, each only when its
setting is on; the dev-token setting is refused in cluster mode."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from chatmesh_common.clock import SystemClock
from chatmesh_common.settings import ConfigError
from chatmesh_launcher.dev import DevOptions, DevSystem, dev_process
from gateway_ws.config import GatewayConfig
from gateway_ws.server import Gateway, start_gateway
from gateway_ws.web import WEB_ROOT

SECRET = "web-client-tests-secret-of-at-least-32-bytes"

Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    started: list[Gateway] = []

    async def run(**overrides: Any) -> Gateway:
        config = GatewayConfig(jwt_secret=SECRET, host="127.0.0.1", port=0, metrics_port=-1)
        # No chat_service behind it: these tests never open a socket.
        gateway = await start_gateway(dataclasses.replace(config, **overrides))
        started.append(gateway)
        return gateway

    try:
        yield run
    finally:
        for gateway in started:
            await gateway.stop()


def base(gateway: Gateway) -> str:
    return f"http://{gateway.host}:{gateway.port}"


async def get(gateway: Gateway, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(base(gateway) + path)


async def raw(gateway: Gateway, request: bytes) -> bytes:
    """Sends `request` as is (no client normalizes the path) and reads the whole answer."""
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/chatmesh-sdk.js", "text/javascript; charset=utf-8"),
        ("/blurhash.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
async def test_static_files_have_their_content_type_and_no_cache(
    start: Start, path: str, content_type: str
) -> None:
    gateway = await start(web_client=True)
    reply = await get(gateway, path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == content_type
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-content-type-options"] == "nosniff"
    name = "index.html" if path == "/" else path[1:]
    assert reply.content == (WEB_ROOT / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/missing.js",
        "/../config.py",
        "/..%2fconfig.py",
        "/%2e%2e/config.py",
        "/web/app.js",
        "/.hidden.js",
        "/app.js/",
        "//etc/passwd",
        "/..\\config.py",
        "/__init__.py",
    ],
)
async def test_unknown_paths_and_traversal_are_404(start: Start, path: str) -> None:
    gateway = await start(web_client=True)
    answer = await raw(gateway, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
    assert b"import" not in answer and b"root:" not in answer


async def test_a_file_next_to_the_web_root_is_not_served(start: Start) -> None:
    """The package's Python files sit one directory up: none is reachable."""
    gateway = await start(web_client=True)
    for name in ("config.py", "web.py", "server.py"):
        assert (WEB_ROOT.parent / name).is_file()
        assert (await get(gateway, f"/{name}")).status_code == 404
        assert (await get(gateway, f"/../{name}")).status_code == 404


async def test_only_get_is_answered(start: Start) -> None:
    gateway = await start(web_client=True)
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        request = f"{method} /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        answer = await raw(gateway, request.encode())
        assert answer.startswith(b"HTTP/1.1 405 "), (method, answer[:200])
        assert b"Allow: GET" in answer
        assert b"<html" not in answer


async def test_without_the_setting_no_file_is_served(start: Start) -> None:
    gateway = await start()
    for path in ("/", "/index.html", "/app.js"):
        reply = await get(gateway, path)
        assert reply.status_code == 404
    assert (await get(gateway, "/healthz")).status_code == 200


async def test_dev_token_signs_a_user_token_when_enabled(start: Start) -> None:
    gateway = await start(dev_tokens=True)
    reply = await get(gateway, "/dev/token?user=alice&device=web-1")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in reply.headers
    answer = reply.json()
    assert answer["userId"] == "alice" and answer["deviceId"] == "web-1"
    claims = jwt.decode(answer["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["did"] == "web-1"
    for bad in ("", "?user=", "?user=a%20b", "?user=" + "x" * 129, "?user=bob&device=a/b"):
        assert (await get(gateway, "/dev/token" + bad)).status_code == 400, bad


async def test_dev_token_is_404_when_not_enabled(start: Start) -> None:
    for overrides in ({}, {"web_client": True}):
        gateway = await start(**overrides)
        reply = await get(gateway, "/dev/token?user=alice")
        assert reply.status_code == 404
        assert "token" not in reply.text


def test_cluster_mode_refuses_dev_tokens() -> None:
    env = {"CHATMESH_JWT_SECRET": SECRET, "CHATMESH_MODE": "cluster"}
    with pytest.raises(ConfigError, match="CHATMESH_WS_DEV_TOKENS"):
        GatewayConfig.from_env({**env, "CHATMESH_WS_DEV_TOKENS": "true"})
    config = GatewayConfig.from_env({**env, "CHATMESH_WS_WEB_CLIENT": "true"})
    assert config.web_client and not config.dev_tokens
    assert not GatewayConfig.from_env({"CHATMESH_JWT_SECRET": SECRET}).dev_tokens


async def test_settings_are_off_by_default_and_dev_turns_them_on(tmp_path: Path) -> None:
    defaults = GatewayConfig.from_env({"CHATMESH_JWT_SECRET": SECRET})
    assert not defaults.web_client and not defaults.dev_tokens
    options = DevOptions(
        data_dir=str(tmp_path), grpc="127.0.0.1:0", ws="127.0.0.1:0", metrics="127.0.0.1:0"
    )
    system = dev_process(options, SystemClock(), {"CHATMESH_JWT_SECRET": SECRET}).service
    assert isinstance(system, DevSystem)
    assert system._gateway_config.web_client and system._gateway_config.dev_tokens
    off = {
        "CHATMESH_JWT_SECRET": SECRET,
        "CHATMESH_WS_DEV_TOKENS": "false",
        "CHATMESH_WS_WEB_CLIENT": "false",
    }
    system = dev_process(options, SystemClock(), off).service
    assert isinstance(system, DevSystem)
    assert not system._gateway_config.dev_tokens and not system._gateway_config.web_client
