"""Settings: each one declared once, read from the environment the same way in every service.

A service's config is a frozen dataclass whose fields are declared with `setting(...)`: the
environment variable, the default (written only there), a one-line meaning and the validation
(required, min/max, positive, choices). `read_env(Config, env)` parses the variables that are set
and builds the config; the config's `__post_init__` calls `validate(self)`, so a config built in a
test is held to the same rules as one read from the environment. `describe(Config, env)` lists
every declared setting for `chatmesh config` and docs/settings.md.

A bad value is a ConfigError naming the variable; services refuse to start on one.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_KEY = "chatmesh.setting"

C = TypeVar("C")


class ConfigError(ValueError):
    """A required setting is missing or malformed: the service refuses to start."""


# The `chatmesh dev` flag that sets each bind setting, named in a bind error.
DEV_BIND_FLAGS = {
    "CHATMESH_GRPC_BIND": "--grpc",
    "CHATMESH_WS_PORT": "--ws",
    "CHATMESH_METRICS_BIND": "--metrics",
    "CHATMESH_METRICS_PORT": "--metrics",
    "CHATMESH_WS_METRICS_PORT": "--metrics",
}


class BindError(ConfigError):
    """A listener cannot bind its address: one line naming it and the setting that moves it."""

    def __init__(self, address: str, setting_name: str, reason: str) -> None:
        flag = DEV_BIND_FLAGS.get(setting_name)
        also = f" (chatmesh dev: {flag} HOST:PORT)" if flag else ""
        super().__init__(f"cannot listen on {address}: {reason}; set {setting_name}{also}")
        self.address = address


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default, meaning and the values it accepts."""

    env: str
    default: Any
    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    # Strictly above zero (durations and rates where 0 would stall or divide by zero).
    positive: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False
    # Never printed: `chatmesh config` shows whether it is set, not its value.
    secret: bool = False

    def rules(self) -> str:
        """The validation in words, for the settings listing."""
        parts = []
        if self.required:
            parts.append("required")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.positive:
            parts.append("> 0")
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return "; ".join(parts)

    def check(self, value: Any, name: str) -> None:
        """Raises ConfigError unless `value` (of the config field `name`) follows the rules."""
        label = f"{self.env} ({name})"
        if self.required and value in ("", ()):
            raise ConfigError(f"{self.env} is required ({self.meaning})")
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(f"{label} must be one of {allowed}, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.positive and value <= 0:
                raise ConfigError(f"{label} must be positive, got {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(f"{label} must be at least {self.minimum:g}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"{label} must be at most {self.maximum:g}, got {value!r}")


def setting(
    env: str,
    default: Any,
    meaning: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    choices: tuple[str, ...] = (),
    required: bool = False,
    secret: bool = False,
) -> Any:
    """A dataclass field read from `env`; the field's annotation gives the type."""
    declared = Setting(env, default, meaning, minimum, maximum, positive, choices, required, secret)
    return dataclasses.field(default=default, metadata={_KEY: declared})


@dataclass(frozen=True)
class Declared:
    """A setting as one config declares it: the field it fills and the field's type."""

    field: str
    kind: Any
    setting: Setting


def declared(config: type[Any]) -> list[Declared]:
    """The settings a config class declares, in field order."""
    hints = typing.get_type_hints(config)
    return [
        Declared(f.name, hints[f.name], f.metadata[_KEY])
        for f in dataclasses.fields(config)
        if _KEY in f.metadata
    ]


def _parse(kind: Any, raw: str, env: str) -> Any:
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{env} must be true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{env} must be an integer, got {raw!r}") from exc
    if kind is float:
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{env} must be a number, got {raw!r}") from exc
    if typing.get_origin(kind) is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """The given mapping, or the process environment."""
    return os.environ if env is None else env


def read_env(config: type[C], env: Mapping[str, str] | None = None, **computed: Any) -> C:
    """Builds `config` from the variables that are set (blank counts as unset).

    `computed` fills the fields that are not plain settings (e.g. nested NATS settings).
    """
    source = environ(env)
    values: dict[str, Any] = {}
    for item in declared(config):
        raw = source.get(item.setting.env, "").strip()
        if raw:
            values[item.field] = _parse(item.kind, raw, item.setting.env)
    return config(**values, **computed)


def read_one(config: type[Any], field: str, env: Mapping[str, str] | None = None) -> Any:
    """One declared setting of `config` from the environment (its default when unset).

    For a value needed before the whole config can be read (where `chatmesh dev` keeps the
    secret that the config then requires).
    """
    for item in declared(config):
        if item.field == field:
            raw = environ(env).get(item.setting.env, "").strip()
            value = _parse(item.kind, raw, item.setting.env) if raw else item.setting.default
            item.setting.check(value, field)
            return value
    raise KeyError(f"{config.__name__} declares no setting {field!r}")


def validate(config: Any) -> None:
    """Checks every declared field of a config instance; call it from `__post_init__`."""
    for item in declared(type(config)):
        item.setting.check(getattr(config, item.field), item.field)


@dataclass(frozen=True)
class Row:
    """One line of `chatmesh config`."""

    env: str
    type: str
    default: str
    current: str
    meaning: str
    rules: str


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(kind, str(kind))


def describe(config: type[Any], env: Mapping[str, str] | None = None) -> list[Row]:
    """Every declared setting with its default and the value the environment gives it."""
    source = environ(env)
    rows = []
    for item in declared(config):
        s = item.setting
        raw = source.get(s.env, "").strip()
        if s.secret:
            current = "(set)" if raw else "(unset)"
        else:
            current = raw or _show(s.default)
        rows.append(
            Row(s.env, _type_name(item.kind), _show(s.default), current, s.meaning, s.rules())
        )
    return rows


# Settings that several services read. Each is declared here once; a config takes one as a
# field (`jwt_secret: str = jwt_secret_setting()`).

MODES = ("embedded", "cluster")


def mode_setting() -> Any:
    return setting(
        "CHATMESH_MODE",
        "embedded",
        "cluster refuses to start on an embedded backend (SQLite, in-process bus, memory presence)",
        choices=MODES,
    )


def bus_setting() -> Any:
    return setting(
        "CHATMESH_BUS",
        "inprocess",
        "inprocess (one process) or nats (every replica on one NATS)",
        choices=("inprocess", "nats"),
    )


def jwt_secret_setting() -> Any:
    return setting(
        "CHATMESH_JWT_SECRET",
        "",
        "the HS256 secret user tokens are signed with",
        required=True,
        secret=True,
    )


def service_secret_setting(required: bool) -> Any:
    return setting(
        "CHATMESH_SERVICE_SECRET",
        "",
        "the HS256 secret service tokens are signed with (must differ from CHATMESH_JWT_SECRET)",
        required=required,
        secret=True,
    )


def drain_setting() -> Any:
    return setting(
        "CHATMESH_DRAIN_S",
        5.0,
        "seconds health reports NOT_SERVING before the server stops (load balancers stop routing)",
        minimum=0,
    )


def grace_setting() -> Any:
    return setting(
        "CHATMESH_SHUTDOWN_GRACE_S",
        5.0,
        "seconds in-flight calls get to finish once the server stops",
        minimum=0,
    )


def leeway_setting() -> Any:
    return setting(
        "CHATMESH_TOKEN_LEEWAY_S",
        10.0,
        "seconds a token is still accepted after it expired",
        minimum=0,
        maximum=10,
    )


def refuse_embedded(mode: str, what: str, instead: str) -> None:
    """In cluster mode an embedded backend is a configuration error, not a silent default."""
    if mode == "cluster":
        raise ConfigError(f"CHATMESH_MODE=cluster refuses {what}; {instead}")
