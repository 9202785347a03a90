"""The secrets `chatmesh dev` keeps in its data dir, shared with the commands that sign tokens
for it (`chatmesh token`, `tail`, `chat`). Light on imports: those commands start quickly."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from chatmesh_common.settings import ConfigError


def dev_secret(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    variable: str = "CHATMESH_JWT_SECRET",
    file_name: str = "jwt-secret",
    *,
    create: bool = True,
) -> str:
    """The configured secret, else one kept in the data dir so `chatmesh token` agrees with dev.

    Used for the user token secret and for the service token secret (`service-secret`). With
    `create` false a missing file is a ConfigError (a token signed with a fresh secret would be
    refused by the running server).
    """
    configured = (os.environ if env is None else env).get(variable, "")
    if configured:
        return configured
    path = data_dir / file_name
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise ConfigError(
            f"{variable} is unset and {path} does not exist: start `chatmesh dev` with this data"
            f" dir first, pass --data-dir where it keeps its data, or set {variable}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret
