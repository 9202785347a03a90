"""chat_service settings: each declared once (chatmesh_common.settings), read once from the env."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.bus.nats_settings import NatsSettings, nats_settings_from_env
from chatmesh_common.identity import IssuerSettings
from chatmesh_common.limits import LIMITS
from chatmesh_common.settings import ConfigError as ConfigError
from chatmesh_common.settings import (
    bus_setting,
    drain_setting,
    environ,
    grace_setting,
    jwt_secret_setting,
    leeway_setting,
    mode_setting,
    read_env,
    refuse_embedded,
    service_secret_setting,
    setting,
    validate,
)
from chatmesh_common.tls import TlsSettings

from .store.scylla import ScyllaSettings, ScyllaSettingsError


@dataclass(frozen=True)
class ChatConfig:
    jwt_secret: str = jwt_secret_setting()
    # Verifies service tokens (AccessService); empty: no service token is accepted.
    service_secret: str = service_secret_setting(required=False)
    mode: str = mode_setting()
    media_target: str = setting(
        "CHATMESH_MEDIA_TARGET",
        "",
        "where MediaService answers; empty: messages cannot carry attachments",
    )
    data_dir: str = setting(
        "CHATMESH_DATA_DIR", "./chatmesh-data", "where the SQLite store keeps its files"
    )
    grpc_bind: str = setting(
        "CHATMESH_GRPC_BIND", "127.0.0.1:50051", "host:port of the gRPC server (port 0: any free)"
    )
    store: str = setting(
        "CHATMESH_STORE", "sqlite", "the message store", choices=("sqlite", "scylla")
    )
    # Set when store == "scylla" (its CHATMESH_SCYLLA_* settings: docs/storage.md).
    scylla: ScyllaSettings | None = None
    metrics_host: str = setting(
        "CHATMESH_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_METRICS_PORT", 9101, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    max_body_bytes: int = setting(
        "CHATMESH_MAX_BODY_BYTES",
        LIMITS.max_body_bytes,
        "largest message body, bytes of UTF-8",
        minimum=1,
    )
    max_group_members: int = setting(
        "CHATMESH_MAX_GROUP_MEMBERS",
        LIMITS.max_group_members,
        "members of a group, owner included",
        minimum=2,
    )
    default_page: int = setting(
        "CHATMESH_HISTORY_PAGE_DEFAULT",
        LIMITS.default_page,
        "messages in a history page asked for with no limit",
        minimum=1,
    )
    max_page: int = setting(
        "CHATMESH_HISTORY_PAGE_MAX",
        LIMITS.max_page,
        "most messages a history page may ask for",
        minimum=1,
    )
    conversations_per_hour: float = setting(
        "CHATMESH_CONVERSATIONS_PER_HOUR",
        LIMITS.conversations_per_hour,
        "conversations one user may create per hour (0: no limit)",
        minimum=0,
    )
    conversation_burst: int = setting(
        "CHATMESH_CONVERSATION_BURST",
        LIMITS.conversation_burst,
        "conversations one user may create in a row",
        minimum=1,
    )
    invites_per_hour: float = setting(
        "CHATMESH_INVITES_PER_HOUR",
        LIMITS.invites_per_hour,
        "members one user may add per hour, new conversations' members included (0: no limit)",
        minimum=0,
    )
    invite_burst: int = setting(
        "CHATMESH_INVITE_BURST",
        LIMITS.invite_burst,
        "members one user may add in a row",
        minimum=1,
    )
    token_leeway_s: float = leeway_setting()
    shutdown_grace_s: float = grace_setting()
    drain_s: float = drain_setting()
    bus: str = bus_setting()
    # Set when bus == "nats" (its CHATMESH_NATS_* settings: docs/events.md).
    nats: NatsSettings = field(default_factory=NatsSettings)
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    # TLS of its gRPC server and of its calls to other services (CHATMESH_TLS_*: docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)
    fanout_read_threshold: int = setting(
        "CHATMESH_FANOUT_READ_THRESHOLD",
        500,
        "conversations with more members fan out on read (one publish per conversation)",
        minimum=0,
    )
    relay_sweep_s: float = setting(
        "CHATMESH_RELAY_SWEEP_S",
        2.0,
        "how often the relay re-publishes events left in the outbox",
        positive=True,
    )
    retention_direct_days: int = setting(
        "CHATMESH_RETENTION_DIRECT_DAYS", 0, "days direct messages are kept (0: forever)", minimum=0
    )
    retention_group_days: int = setting(
        "CHATMESH_RETENTION_GROUP_DAYS", 0, "days group messages are kept (0: forever)", minimum=0
    )
    retention_channel_days: int = setting(
        "CHATMESH_RETENTION_CHANNEL_DAYS",
        0,
        "days channel messages are kept (0: forever)",
        minimum=0,
    )
    retention_sweep_s: float = setting(
        "CHATMESH_RETENTION_SWEEP_S",
        3600.0,
        "how often the retention sweeper runs",
        positive=True,
    )
    # The built-in screen of channel messages (chat_service.screening; docs/moderation.md).
    blocked_words: tuple[str, ...] = setting(
        "CHATMESH_MODERATION_BLOCKED_WORDS",
        (),
        "words refused in channel messages, comma-separated, any case (empty: none)",
    )
    blocked_domains: tuple[str, ...] = setting(
        "CHATMESH_MODERATION_BLOCKED_DOMAINS",
        (),
        "link domains refused in channel messages, subdomains included, comma-separated"
        " (empty: none)",
    )
    held_words: tuple[str, ...] = setting(
        "CHATMESH_MODERATION_HELD_WORDS",
        (),
        "words that hold a channel message for moderator review instead of refusing it,"
        " comma-separated, any case (empty: none)",
    )
    reports_per_hour: float = setting(
        "CHATMESH_REPORTS_PER_HOUR",
        30.0,
        "reports one user may file per hour, in bursts of 10 (0: no limit)",
        minimum=0,
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.default_page > self.max_page:
            raise ConfigError(
                "CHATMESH_HISTORY_PAGE_DEFAULT must not exceed CHATMESH_HISTORY_PAGE_MAX"
            )
        if self.service_secret and self.service_secret == self.jwt_secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        if self.media_target and not self.service_secret:
            raise ConfigError("CHATMESH_MEDIA_TARGET needs CHATMESH_SERVICE_SECRET")
        if self.store == "sqlite":
            refuse_embedded(self.mode, "the SQLite store", "set CHATMESH_STORE=scylla")
        if self.bus == "inprocess":
            refuse_embedded(self.mode, "the in-process bus", "set CHATMESH_BUS=nats")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChatConfig:
        source = environ(env)
        config = read_env(cls, source)
        # The backends' own settings are read only for the backend chosen.
        if config.store == "scylla":
            try:
                config = replace(config, scylla=ScyllaSettings.from_env(dict(source)))
            except ScyllaSettingsError as exc:
                raise ConfigError(str(exc)) from exc
        if config.bus == "nats":
            config = replace(config, nats=nats_settings_from_env(source))
        return replace(
            config, identity=IssuerSettings.from_env(source), tls=TlsSettings.from_env(source)
        )
