"""What a service is to the process that runs it: a name, start, stop and a health state.

Every service package has one builder (`build_chat_service`, `build_presence_service`,
`build_gateway_service`) returning a `Service`; `chatmesh serve`, `python -m <service>`, the dev
composition, tests and bench all start services through it.

A gRPC service is a `GrpcService`: one gRPC server hosting the `Component`s of one service
(`chatmesh serve chat`) or of several (`chatmesh dev` hosts chat and presence on one port). Its
stop is the one shutdown sequence: health goes NOT_SERVING, the drain window passes (Envoy and
Kubernetes stop routing to it meanwhile, and calls that still arrive are served), then the server
stops with the grace period, so a call accepted before the stop finishes and gets its answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from chatmesh_common.grpc_server import GrpcServer, Registration, start_grpc_server
from chatmesh_common.tls import TlsSettings

log = logging.getLogger(__name__)


class Health(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    # Stopping: the drain window, then the grace period.
    NOT_SERVING = "not_serving"
    STOPPED = "stopped"


class Service(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def health(self) -> Health: ...

    async def start(self) -> None:
        """Builds what was not passed in, opens it and starts serving."""
        ...

    async def stop(self) -> None:
        """Health NOT_SERVING, the drain window, then in-flight work finishes; idempotent."""
        ...


class Shutdown:
    """Runs a service's shutdown once, however many callers ask (a signal during a test's
    stop, say); each caller returns when that one run has ended."""

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._task: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        # Shielded: a caller cancelled while waiting does not cancel the shutdown itself.
        await asyncio.shield(self._task)


async def drain(name: str, seconds: float) -> None:
    """The drain window: health already says NOT_SERVING; calls that still arrive are served."""
    if seconds > 0:
        log.info("%s draining for %.1f s", name, seconds)
        await asyncio.sleep(seconds)


class Component(Protocol):
    """A service's part of a gRPC server: its servicers and the work around them."""

    @property
    def service_names(self) -> Sequence[str]:
        """Full names of the gRPC services it registers (for health and reflection)."""
        ...

    async def open(self) -> Sequence[Registration]:
        """Opens its dependencies, starts its background work; returns its servicers."""
        ...

    async def before_stop(self) -> None:
        """After the drain window, before the server stops: end calls that never end alone."""
        ...

    async def close(self) -> None:
        """After the server stopped: stop background work and close what it opened."""
        ...


class ServerSettings(Protocol):
    """The settings of a gRPC server, as every service config declares them."""

    @property
    def grpc_bind(self) -> str: ...

    @property
    def shutdown_grace_s(self) -> float: ...

    @property
    def drain_s(self) -> float: ...

    @property
    def tls(self) -> TlsSettings: ...


class GrpcService:
    """Components served on one gRPC server, with the shutdown sequence of the module doc."""

    def __init__(
        self, name: str, components: Sequence[Component], settings: ServerSettings
    ) -> None:
        self._name = name
        self._bind = settings.grpc_bind
        self.components = list(components)
        self._grace_s = settings.shutdown_grace_s
        self._drain_s = settings.drain_s
        self._tls = settings.tls
        self._health = Health.STARTING
        self._server: GrpcServer | None = None
        self._opened: list[Component] = []
        self.registrations: list[Registration] = []
        self.stop = Shutdown(self._shutdown)

    @property
    def name(self) -> str:
        return self._name

    @property
    def health(self) -> Health:
        return self._health

    @property
    def port(self) -> int:
        assert self._server is not None, f"{self._name} is not running"
        return self._server.port

    async def start(self) -> None:
        try:
            for component in self.components:
                # A component that fails half-way closes what it opened before the failure.
                self._opened.append(component)
                self.registrations.extend(await component.open())
            names = [n for c in self.components for n in c.service_names]
            self._server = await start_grpc_server(
                self._bind, self.registrations, names, tls=self._tls
            )
        except BaseException:
            await self._close_opened()
            self._health = Health.STOPPED
            raise
        self._health = Health.SERVING

    async def _shutdown(self) -> None:
        if self._server is None:
            await self._close_opened()
            self._health = Health.STOPPED
            return
        self._health = Health.NOT_SERVING
        await self._server.set_not_serving()
        await drain(self._name, self._drain_s)
        for component in self._opened:
            await component.before_stop()
        await self._server.stop(self._grace_s)
        await self._close_opened()
        self._health = Health.STOPPED
        log.info("%s stopped", self._name)

    async def _close_opened(self) -> None:
        while self._opened:
            await self._opened.pop().close()
