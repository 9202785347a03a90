"""The driver session of the cluster media store: connection, prepared statements, and the bridge
from the driver's callbacks to asyncio.

`pages` turns a ResponseFuture into an async iterator of result pages: each page arrives through
`add_callbacks` and `loop.call_soon_threadsafe` (no thread per call, the event loop never blocks),
and the next page is asked for only when the caller wants it. The driver is imported only when a
session connects, so the embedded deployment does not need it installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

from chatmesh_common.detached import run_detached

# A driver stuck on a dead or frozen server must not hang the stop of the process using it.
CLOSE_TIMEOUT_S = 15.0


class CqlSession:
    """One driver cluster and session, with the given statements prepared by name."""

    def __init__(
        self,
        contact_points: Sequence[str],
        *,
        port: int,
        local_dc: str,
        consistency: str,
        serial_consistency: str,
        request_timeout: float,
        cluster_options: Mapping[str, Any],
    ) -> None:
        self._contact_points = list(contact_points)
        self._port = port
        self._local_dc = local_dc
        self._consistency = consistency
        self._serial_consistency = serial_consistency
        self._request_timeout = request_timeout
        self._cluster_options = dict(cluster_options)
        self._cluster: Any = None
        self._session: Any = None
        self._ps: dict[str, Any] = {}

    def connect(self, setup: Callable[[Any], None], statements: Mapping[str, str]) -> None:
        """Connects (blocking), runs `setup(session)` (the schema), then prepares `statements`."""
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        # The driver's default retry policy never retries a write that timed out (only batch-log
        # writes), so a lightweight transaction is never run twice behind the store's back.
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=self._local_dc)
            ),
            consistency_level=getattr(ConsistencyLevel, self._consistency),
            serial_consistency_level=getattr(ConsistencyLevel, self._serial_consistency),
            request_timeout=self._request_timeout,
        )
        options: dict[str, Any] = {"protocol_version": 4, **self._cluster_options}
        self._cluster = Cluster(
            contact_points=self._contact_points,
            port=self._port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            **options,
        )
        try:
            self._session = self._cluster.connect()
            setup(self._session)
            self._ps = {name: self._session.prepare(cql) for name, cql in statements.items()}
        except BaseException:
            # The caller gets no store to close: the driver's threads must not outlive it.
            self._cluster.shutdown()
            self._cluster = self._session = None
            raise

    async def close(self) -> None:
        if self._cluster is not None:
            cluster, self._cluster, self._session = self._cluster, None, None
            await run_detached(
                cluster.shutdown, timeout_s=CLOSE_TIMEOUT_S, what="CQL driver shutdown"
            )

    def bind(self, name: str, params: Sequence[Any] = (), *, fetch_size: int = 0) -> Any:
        if self._session is None:
            raise RuntimeError("the media store is not open")
        statement = self._ps[name].bind(params)
        if fetch_size:
            statement.fetch_size = fetch_size
        return statement

    async def run(self, name: str, params: Sequence[Any] = ()) -> list[Any]:
        """Executes a prepared statement; all pages of its result."""
        rows: list[Any] = []
        async for page in self.pages(self.bind(name, params)):
            rows.extend(page)
        return rows

    async def applied(self, name: str, params: Sequence[Any] = ()) -> bool:
        """Executes a lightweight transaction; whether it was applied."""
        rows = await self.run(name, params)
        return bool(rows and rows[0][0])

    async def pages(self, statement: Any) -> AsyncGenerator[list[Any]]:
        """The result of a bound statement page by page; the next page is fetched only when the
        iteration goes on."""
        if self._session is None:
            raise RuntimeError("the media store is not open")
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[tuple[list[Any], BaseException | None]] = asyncio.Queue()
        response = self._session.execute_async(statement)

        def on_rows(page: Any) -> None:
            loop.call_soon_threadsafe(arrived.put_nowait, (list(page or ()), None))

        def on_error(error: BaseException) -> None:
            loop.call_soon_threadsafe(arrived.put_nowait, ([], error))

        response.add_callbacks(on_rows, on_error)
        while True:
            rows, error = await arrived.get()
            if error is not None:
                raise error
            yield rows
            if not response.has_more_pages:
                return
            response.start_fetching_next_page()
