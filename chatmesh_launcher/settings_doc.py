"""Every setting of every chatmesh process, listed from the one declaration of each.

`chatmesh config` prints them with the value the environment gives each (secrets only say whether
they are set); `chatmesh config --markdown` prints docs/settings.md, which a test keeps current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chat_service.config import ChatConfig
from chat_service.store.scylla import ScyllaSettings
from chatmesh_common.bus.nats_settings import NatsSettings
from chatmesh_common.identity import IssuerSettings
from chatmesh_common.runner import RunnerConfig
from chatmesh_common.settings import describe
from chatmesh_common.tls import TlsSettings
from gateway_ws.config import GatewayConfig
from media_service.config import MediaConfig
from notify_service.config import NotifyConfig
from notify_service.providers.settings import ProviderSettings
from presence_service.config import PresenceConfig
from search_service.config import SearchConfig

from .dev import DevConfig

# (title, who reads it, config class), in the order of the listing.
SECTIONS: tuple[tuple[str, str, type[Any]], ...] = (
    ("every process", "every chatmesh process", RunnerConfig),
    ("chat_service", "`chatmesh serve chat`, `python -m chat_service`", ChatConfig),
    ("presence_service", "`chatmesh serve presence`, `python -m presence_service`", PresenceConfig),
    ("gateway_ws", "`chatmesh serve gateway`, `python -m gateway_ws`", GatewayConfig),
    (
        "identity provider",
        "chat_service, presence_service and gateway_ws: user tokens signed by your IdP",
        IssuerSettings,
    ),
    (
        "TLS",
        "every gRPC service and gateway_ws: their listeners and their calls to each other"
        " (docs/deploy.md)",
        TlsSettings,
    ),
    ("NATS bus", "chat_service and presence_service with `CHATMESH_BUS=nats`", NatsSettings),
    (
        "ScyllaDB store",
        "chat_service and `chatmesh migrate` with `CHATMESH_STORE=scylla`;"
        " media_service with `CHATMESH_MEDIA_RECORDS_STORE=scylla`",
        ScyllaSettings,
    ),
    ("chatmesh dev", "`chatmesh dev`, on top of the services' settings", DevConfig),
    ("search_service", "`chatmesh serve search`, `python -m search_service`", SearchConfig),
    ("notify_service", "`chatmesh serve notify`, `python -m notify_service`", NotifyConfig),
    (
        "push providers",
        "notify_service (and `chatmesh dev`): APNs, FCM, Web Push and webhook credentials",
        ProviderSettings,
    ),
    ("media_service", "`chatmesh serve media`, `python -m media_service`", MediaConfig),
)

REGENERATE = "chatmesh config --markdown > docs/settings.md"


def render_text(env: Mapping[str, str] | None = None) -> str:
    lines = []
    for title, _readers, config in SECTIONS:
        lines.append(f"[{title}]")
        for row in describe(config, env):
            rules = f" ({row.rules})" if row.rules else ""
            lines.append(f"{row.env}={row.current}")
            lines.append(f"    default {row.default or '(empty)'}: {row.meaning}{rules}")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """docs/settings.md: defaults and meanings only, so it does not depend on the environment."""
    out = [
        "# Settings",
        "",
        f"Generated from the settings' declarations by `{REGENERATE}`; do not edit it",
        "by hand. Every setting is an environment variable; a blank value counts as unset. A",
        "malformed or out-of-range value stops the process with one line naming the variable",
        "(exit status 2). `chatmesh config` lists the same settings with the values the",
        "environment gives them. The ScyllaDB settings (`CHATMESH_SCYLLA_*`) are in",
        "docs/storage.md. `CHATMESH_MODE=cluster` makes chat_service, presence_service and",
        "notify_service refuse the embedded backends; `chatmesh dev` always runs them (and so",
        "refuses cluster mode).",
        "",
    ]
    for title, readers, config in SECTIONS:
        out += [f"## {title}", "", f"Read by {readers}.", ""]
        out += ["| variable | type | default | meaning | accepts |", "|---|---|---|---|---|"]
        for row in describe(config, {}):
            default = f"`{row.default}`" if row.default else "(empty)"
            out.append(
                f"| `{row.env}` | {row.type} | {_cell(default)} | {_cell(row.meaning)} "
                f"| {_cell(row.rules)} |"
            )
        out.append("")
    return "\n".join(out)
