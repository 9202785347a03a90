"""Asking chat_service's AccessService with a service credential: the one client plumbing that
presence, search, media and push share (each adds its own typed questions on top).

An answer chat_service could not give (down, timed out, or our own credential refused) is
UNAVAILABLE to the caller: a service never answers without its access check. Refusals that are
about the user asked for (`passed_on`, e.g. PERMISSION_DENIED) reach the caller as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import grpc
from chatmesh.chat.v1 import access_service_pb2_grpc

from .auth import ServiceCredential
from .rpc import RpcError

log = logging.getLogger(__name__)


class AccessServiceClient:
    """AccessService over gRPC. The channel may be given later (`chatmesh dev` serves
    AccessService on a server whose port is known only once it started)."""

    def __init__(
        self,
        credential: ServiceCredential,
        channel: grpc.aio.Channel | None = None,
        timeout_s: float = 2.0,
        passed_on: Collection[grpc.StatusCode] = (),
    ) -> None:
        self._credential = credential
        self._stub: Any = None
        self._timeout_s = timeout_s
        self._passed_on = frozenset(passed_on)
        if channel is not None:
            self.set_channel(channel)

    def set_channel(self, channel: grpc.aio.Channel) -> None:
        self._stub = access_service_pb2_grpc.AccessServiceStub(channel)

    async def call(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "access service not connected yet")
        try:
            return await getattr(self._stub, method)(
                request, metadata=self._credential.metadata(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL):
                # Our own credential was refused: a deployment error, not the caller's.
                log.error("chat_service refused the %s credential: %s", method, exc.details())
            else:
                log.warning("access check %s failed: %s", method, exc.details())
            if code not in self._passed_on:
                code = grpc.StatusCode.UNAVAILABLE
            raise RpcError(code, f"access check: {exc.details()}") from exc
