"""Settings of the ScyllaDB store, read from the environment (CHATMESH_STORE=scylla)."""

from __future__ import annotations

from dataclasses import dataclass

from chatmesh_common.cql_settings import CONSISTENCIES as CONSISTENCIES
from chatmesh_common.cql_settings import ScyllaSettings as CqlSettings
from chatmesh_common.cql_settings import ScyllaSettingsError as ScyllaSettingsError

from ..base import ChatStore
from .store import ScyllaChatStore


@dataclass(frozen=True)
class ScyllaSettings(CqlSettings):
    """The shared CHATMESH_SCYLLA_* settings, and the chat store they make."""

    def build_store(self, migrate_on_open: bool | None = None) -> ChatStore:
        return ScyllaChatStore(
            list(self.contact_points),
            port=self.port,
            local_dc=self.local_dc,
            keyspace=self.keyspace,
            replication=self.replication,
            consistency=self.consistency,
            request_timeout=self.request_timeout_s,
            migrate_on_open=self.migrate_on_open if migrate_on_open is None else migrate_on_open,
            cluster_options=self.cluster_options(),
        )
