"""search_service settings, each declared once (chatmesh_common.settings), read from the env."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from chatmesh_common.bus.nats_settings import NatsSettings, nats_settings_from_env
from chatmesh_common.identity import IssuerSettings
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


@dataclass(frozen=True)
class SearchConfig:
    jwt_secret: str = jwt_secret_setting()
    # Signs search_service's service token (its AccessService questions to chat_service).
    service_secret: str = service_secret_setting(required=True)
    mode: str = mode_setting()
    grpc_bind: str = setting(
        "CHATMESH_GRPC_BIND", "127.0.0.1:50054", "host:port of the gRPC server (port 0: any free)"
    )
    engine: str = setting(
        "CHATMESH_SEARCH_ENGINE",
        "fts5",
        "fts5 (embedded SQLite FTS5) or solr (an Apache Solr 9 cluster in SolrCloud mode)",
        choices=("fts5", "solr"),
    )
    index_path: str = setting(
        "CHATMESH_SEARCH_INDEX", "chatmesh-search.db", "the SQLite file of the fts5 engine"
    )
    solr_url: str = setting(
        "CHATMESH_SEARCH_SOLR_URL",
        "",
        "base URL of a SolrCloud node for the solr engine, e.g. http://solr-0:8983/solr",
    )
    solr_collection: str = setting(
        "CHATMESH_SEARCH_SOLR_COLLECTION",
        "chatmesh-messages",
        "the solr engine's collection (one per deployment; created on start if missing)",
    )
    solr_configset: str = setting(
        "CHATMESH_SEARCH_SOLR_CONFIGSET",
        "chatmesh-messages",
        "configset a new collection uses (uploaded from search_service if missing)",
    )
    solr_shards: int = setting(
        "CHATMESH_SEARCH_SOLR_SHARDS", 1, "shards of a collection the engine creates", positive=True
    )
    solr_replicas: int = setting(
        "CHATMESH_SEARCH_SOLR_REPLICAS",
        1,
        "replicas per shard of a collection the engine creates",
        positive=True,
    )
    index_lanes: int = setting(
        "CHATMESH_SEARCH_INDEX_LANES",
        8,
        "conversations the indexer writes at once (overlaps the solr engine's round trips)",
        positive=True,
    )
    # The bus chat_service writes its durable log to; the indexer reads it.
    bus: str = bus_setting()
    nats: NatsSettings = field(default_factory=NatsSettings)
    # TLS of its gRPC server and of its calls to other services (CHATMESH_TLS_*: docs/deploy.md).
    tls: TlsSettings = field(default_factory=TlsSettings)
    # The identity provider whose user tokens are accepted (CHATMESH_JWT_*: docs/identity.md).
    identity: IssuerSettings = field(default_factory=IssuerSettings)
    chat_target: str = setting(
        "CHATMESH_CHAT_TARGET", "127.0.0.1:50051", "where AccessService (chat_service) answers"
    )
    token_leeway_s: float = leeway_setting()
    metrics_host: str = setting(
        "CHATMESH_METRICS_HOST", "127.0.0.1", "host of the Prometheus endpoint"
    )
    metrics_port: int = setting(
        "CHATMESH_METRICS_PORT", 9105, "port of the Prometheus endpoint (-1: none)", minimum=-1
    )
    shutdown_grace_s: float = grace_setting()
    drain_s: float = drain_setting()

    def __post_init__(self) -> None:
        validate(self)
        if self.service_secret == self.jwt_secret:
            raise ConfigError("CHATMESH_SERVICE_SECRET must differ from CHATMESH_JWT_SECRET")
        if self.engine == "fts5":
            refuse_embedded(self.mode, "the fts5 search engine", "set CHATMESH_SEARCH_ENGINE=solr")
        if self.engine == "solr" and not self.solr_url:
            raise ConfigError("CHATMESH_SEARCH_ENGINE=solr needs CHATMESH_SEARCH_SOLR_URL")
        if self.bus == "inprocess":
            refuse_embedded(self.mode, "the in-process bus", "set CHATMESH_BUS=nats")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SearchConfig:
        source = dict(environ(env))
        config = read_env(
            cls, source, tls=TlsSettings.from_env(source), identity=IssuerSettings.from_env(source)
        )
        if config.bus == "nats":
            config = replace(config, nats=nats_settings_from_env(source))
        return config
