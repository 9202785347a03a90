"""Reading settings from the environment, the same way in every service.

A malformed value is a ConfigError naming the variable; services refuse to start on one.
"""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A required setting is missing or malformed: the service refuses to start."""


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(
    env: Mapping[str, str], name: str, default: float, minimum: float | None = None
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
