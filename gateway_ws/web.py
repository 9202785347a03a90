"""The HTTP side of the web client: static files at / and, in development, GET /dev/token.

Both are answered from the WebSocket server's `process_request`, only when their setting is on,
and only to GET (another method is 405; websockets refuses request bodies itself):

- `CHATMESH_WS_WEB_CLIENT`: the files of gateway_ws/web/ (`/` is index.html). A name is one path
  segment of letters, digits, `-`, `_` and `.`, not starting with a dot, with a known extension;
  anything else (subdirectories, `..`, percent-escapes) is 404. Every answer says
  `Cache-Control: no-cache`, so an edited file is seen on the next load.
- `CHATMESH_WS_DEV_TOKENS`: `/dev/token?user=alice[&device=web-1]` answers
  `{"token": ..., "userId": ..., "deviceId": ..., "expiresInS": ...}`, a user token signed with the
  gateway's `CHATMESH_JWT_SECRET`. It lets anyone who can reach the port sign in as anyone, so
  `chatmesh dev` turns it on, and `CHATMESH_MODE=cluster` refuses it (GatewayConfig). No CORS
  header is sent: pages of other origins cannot read the token.
"""

from __future__ import annotations

import http
import json
import re
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from chatmesh_common.auth import issue_token
from gateway_ws.config import GatewayConfig

WEB_ROOT: Final = Path(__file__).parent / "web"
TOKEN_PATH: Final = "/dev/token"
TOKEN_TTL_S: Final = 12 * 3600

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_NAME: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_ID: Final = re.compile(r"[A-Za-z0-9_.@-]{1,128}")


def response(
    status: http.HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _not_found() -> Response:
    return response(http.HTTPStatus.NOT_FOUND, b"Not Found\n")


def static_file(path: str, root: Path = WEB_ROOT) -> Response:
    """The file `path` names under `root` (`/`: index.html), or 404."""
    name = "index.html" if path == "/" else path.removeprefix("/")
    if not _NAME.fullmatch(name) or ".." in name:
        return _not_found()
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower())
    file = root / name
    if content_type is None or not file.is_file():
        return _not_found()
    return response(http.HTTPStatus.OK, file.read_bytes(), content_type)


def dev_token(config: GatewayConfig, query: str) -> Response:
    """A user token for `?user=` (and `device=`, default "web"), as JSON."""
    params = parse_qs(query, keep_blank_values=True)
    user = params.get("user", [""])[-1]
    device = params.get("device", ["web"])[-1]
    if not _ID.fullmatch(user) or not _ID.fullmatch(device):
        body = b"user (and device) must be 1-128 of A-Z a-z 0-9 _ . @ -\n"
        return response(http.HTTPStatus.BAD_REQUEST, body)
    token = issue_token(config.jwt_secret, user, device, ttl_s=TOKEN_TTL_S)
    answer = {"token": token, "userId": user, "deviceId": device, "expiresInS": TOKEN_TTL_S}
    return response(http.HTTPStatus.OK, json.dumps(answer).encode(), "application/json")


def answer(config: GatewayConfig, request: Request) -> Response | None:
    """The answer to a request for the web client or a dev token; None when it is neither (or
    its setting is off), for the caller's 404."""
    path, _sep, query = request.path.partition("?")
    enabled = config.dev_tokens if path == TOKEN_PATH else config.web_client
    if not enabled:
        return None
    if request.method != "GET":
        refused = response(http.HTTPStatus.METHOD_NOT_ALLOWED, b"Method Not Allowed: use GET\n")
        refused.headers["Allow"] = "GET"
        return refused
    if path == TOKEN_PATH:
        return dev_token(config, query)
    return static_file(path)
