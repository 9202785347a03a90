"""The driver session of the cluster store: connection, retry policy, prepared statements.

The driver's calls are callback based; `execute` bridges a ResponseFuture to an asyncio future
with `add_callbacks` and `loop.call_soon_threadsafe` (no thread per call). The driver is imported
only when a session connects, so the embedded deployment does not need it installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatmesh_common.detached import run_detached

from .schema import migrate
from .statements import STATEMENTS, idempotent, qualified

# A driver stuck on a dead or frozen server must not hang the stop of the process using it.
CLOSE_TIMEOUT_S = 15.0


def idempotent_only_retry_policy() -> Any:
    """Retries a timed-out or failed request once, and only when running it twice is harmless.

    A lightweight transaction that timed out may or may not have been applied: it is never
    retried by the driver; the store re-reads the conversation head and decides.
    """
    from cassandra.policies import RetryPolicy

    class IdempotentOnlyRetryPolicy(RetryPolicy):  # type: ignore[misc]
        def on_read_timeout(
            self,
            query: Any,
            consistency: Any,
            required_responses: int,
            received_responses: int,
            data_retrieved: bool,
            retry_num: int,
        ) -> tuple[int, Any]:
            if retry_num == 0 and received_responses >= required_responses:
                return self.RETRY, consistency
            return self.RETHROW, None

        def on_write_timeout(
            self,
            query: Any,
            consistency: Any,
            write_type: Any,
            required_responses: int,
            received_responses: int,
            retry_num: int,
        ) -> tuple[int, Any]:
            if retry_num == 0 and getattr(query, "is_idempotent", False):
                return self.RETRY, consistency
            return self.RETHROW, None

        def on_unavailable(
            self,
            query: Any,
            consistency: Any,
            required_replicas: int,
            alive_replicas: int,
            retry_num: int,
        ) -> tuple[int, Any]:
            # Nothing was applied: another coordinator may see more replicas alive.
            return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)

        def on_request_error(
            self, query: Any, consistency: Any, error: Any, retry_num: int
        ) -> tuple[int, Any]:
            if retry_num == 0 and getattr(query, "is_idempotent", False):
                return self.RETRY_NEXT_HOST, None
            return self.RETHROW, None

    return IdempotentOnlyRetryPolicy()


# Result shapes whose row class is kept (statements x LWT outcomes: a few dozen in practice).
MAX_ROW_CLASSES = 1024


def cached_row_factory() -> Callable[[Any, Any], list[Any]]:
    """The driver's named-tuple rows, with one row class per list of columns: its default
    factory builds a new namedtuple class for every result set, which cost ~5 % of a
    replica's CPU under load (py-spy). Called on the driver's threads: a dict is enough."""
    from cassandra.query import named_tuple_factory

    classes: dict[tuple[str, ...], Any] = {}

    def factory(colnames: Any, rows: Any) -> list[Any]:
        key = tuple(colnames)
        row_class = classes.get(key)
        if row_class is not None:
            return [row_class(*row) for row in rows]
        made: list[Any] = named_tuple_factory(colnames, rows)
        # Only true namedtuples (the driver falls back to another type for odd columns).
        if made and isinstance(made[0], tuple) and hasattr(made[0], "_fields"):
            if len(classes) < MAX_ROW_CLASSES:
                classes[key] = type(made[0])
        return made

    return factory


class CqlSession:
    """One driver cluster and session, with every statement of `statements` prepared."""

    def __init__(
        self,
        contact_points: Sequence[str],
        *,
        port: int,
        local_dc: str,
        keyspace: str,
        consistency: str,
        serial_consistency: str,
        request_timeout: float,
        cluster_options: Mapping[str, Any],
    ) -> None:
        self._contact_points = list(contact_points)
        self._port = port
        self._local_dc = local_dc
        self._keyspace = keyspace
        self._consistency = consistency
        self._serial_consistency = serial_consistency
        self._request_timeout = request_timeout
        self._cluster_options = dict(cluster_options)
        self._cluster: Any = None
        self._session: Any = None
        self._ps: dict[str, Any] = {}

    def connect(self, replication: Mapping[str, Any] | None) -> None:
        """Connects (blocking); with `replication`, migrates the keyspace first."""
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=self._local_dc)
            ),
            retry_policy=idempotent_only_retry_policy(),
            consistency_level=getattr(ConsistencyLevel, self._consistency),
            serial_consistency_level=getattr(ConsistencyLevel, self._serial_consistency),
            request_timeout=self._request_timeout,
            row_factory=cached_row_factory(),
        )
        options: dict[str, Any] = {"protocol_version": 4, **self._cluster_options}
        self._cluster = Cluster(
            contact_points=self._contact_points,
            port=self._port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **options,
        )
        self._session = self._cluster.connect()
        if replication is not None:
            try:
                migrate(self._session, self._keyspace, replication)
            except BaseException:
                # The caller gets no store to close: the driver's threads must not outlive it.
                self._cluster.shutdown()
                self._cluster = self._session = None
                raise
        self._ps = {
            name: self._session.prepare(qualified(cql, self._keyspace))
            for name, cql in STATEMENTS.items()
        }
        # Only statements that may run twice are retried (see the retry policy).
        for name, prepared in self._ps.items():
            prepared.is_idempotent = idempotent(name)

    async def close(self) -> None:
        if self._cluster is not None:
            cluster, self._cluster, self._session = self._cluster, None, None
            await run_detached(
                cluster.shutdown, timeout_s=CLOSE_TIMEOUT_S, what="CQL driver shutdown"
            )

    def bind(self, name: str, params: Sequence[Any] = ()) -> Any:
        return self._ps[name].bind(params)

    async def run(
        self, name: str, params: Sequence[Any] = (), *, serial: bool = False
    ) -> list[Any]:
        """Executes a prepared statement; all pages of its result."""
        if self._session is None:
            raise RuntimeError("store is not open")
        statement = self._ps[name].bind(params)
        if serial:
            from cassandra import ConsistencyLevel

            statement.consistency_level = getattr(ConsistencyLevel, self._serial_consistency)
        return await self.execute(statement)

    async def execute(self, statement: Any) -> list[Any]:
        """Executes a bound statement or batch; all pages of its result."""
        if self._session is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[Any]] = loop.create_future()
        rows: list[Any] = []
        response = self._session.execute_async(statement)

        def settle(value: list[Any] | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value or [])

        def on_rows(page: Any) -> None:
            rows.extend(page or ())
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(settle, rows, None)

        def on_error(error: BaseException) -> None:
            loop.call_soon_threadsafe(settle, None, error)

        response.add_callbacks(on_rows, on_error)
        return await result

    async def run_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Runs statements alone, or as one UNLOGGED batch (one request; applied atomically
        per partition, not across partitions)."""
        if len(statements) == 1:
            name, params = statements[0]
            await self.run(name, params)
            return
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for name, params in statements:
            batch.add(self._ps[name].bind(params))
        batch.is_idempotent = all(self._ps[name].is_idempotent for name, _ in statements)
        await self.execute(batch)
