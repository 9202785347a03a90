"""Tokens the terminal commands mint for themselves, signed like `chatmesh token` signs them.

`chatmesh tail` and `chatmesh chat` act as a user of a local server: they sign with
CHATMESH_JWT_SECRET, else with the secret `chatmesh dev` keeps in its data dir, and refuse (a
ConfigError) rather than sign with a secret the server would not know.
"""

from __future__ import annotations

from pathlib import Path

from chat_service.config import ChatConfig
from chatmesh_common.auth import issue_token
from chatmesh_common.limits import LIMITS
from chatmesh_common.settings import ConfigError, read_one

from .dev_secrets import dev_secret

# Long enough for a debugging session; the stream is authenticated when it opens.
TERMINAL_TOKEN_TTL_S = 12 * 3600


def check_user(user: str, device: str) -> None:
    """ConfigError unless USER and the device id are 1 to LIMITS.max_id_chars characters."""
    if not user.strip():
        raise ConfigError("USER must not be empty")
    if not device.strip():
        raise ConfigError("--device must not be empty")
    if len(user) > LIMITS.max_id_chars or len(device) > LIMITS.max_id_chars:
        raise ConfigError(f"USER and --device must be at most {LIMITS.max_id_chars} chars")


def mint_user_token(user: str, device: str, data_dir: str | None) -> str:
    """A token for USER's device, signed with the secret the local server uses."""
    check_user(user, device)
    directory = Path(data_dir or read_one(ChatConfig, "data_dir"))
    secret = dev_secret(directory, None, create=False)
    return issue_token(secret, user, device, TERMINAL_TOKEN_TTL_S)
