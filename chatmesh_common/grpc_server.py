"""Starting and stopping a gRPC server the same way in every service.

Each server carries health checking (grpcio-health-checking), server reflection (so grpcurl works
without proto files), a metrics interceptor, TLS (or mutual TLS) when its settings give a
certificate (chatmesh_common.tls), and a graceful stop: health turns NOT_SERVING, new
calls are refused, in-flight calls drain within the grace period.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chatmesh_common.logs import fields
from chatmesh_common.metrics import GRPC_HANDLED, GRPC_LATENCY
from chatmesh_common.request_id import request_id_of
from chatmesh_common.settings import BindError
from chatmesh_common.tls import TlsSettings

log = logging.getLogger(__name__)
# One JSON line per unary call (method, code, duration, peer, request id) when
# CHATMESH_ACCESS_LOG is on.
access_log = logging.getLogger("chatmesh.access")

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    MethodHandler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    MethodHandler = grpc.RpcMethodHandler

# A function like `chat_service_pb2_grpc.add_ChatServiceServicer_to_server`, with its servicer.
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any]


def log_access(
    method: str,
    code: str,
    elapsed_s: float,
    peer: str,
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> None:
    """The access log line of one unary call; `request_id` when the call carries one."""
    entry: dict[str, object] = {
        "method": method,
        "code": code,
        "duration_ms": round(elapsed_s * 1000, 3),
        "peer": peer,
    }
    request_id = request_id_of(metadata)
    if request_id:
        entry["request_id"] = request_id
    access_log.info("rpc", extra=fields(**entry))


class _MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Counts every unary call by status code and times it; writes the access log."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> MethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata
        inner = handler.unary_unary

        async def timed(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except BaseException:
                status = context.code()
                code = status.name if status is not None else "UNKNOWN"
                raise
            finally:
                elapsed = time.perf_counter() - started
                GRPC_LATENCY.labels(method).observe(elapsed)
                GRPC_HANDLED.labels(method, code).inc()
                if access_log.isEnabledFor(logging.INFO):
                    log_access(method, code, elapsed, context.peer(), metadata)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer
    service_names: Sequence[str]

    async def set_not_serving(self) -> None:
        """Health checks answer NOT_SERVING (load balancers stop routing); calls still work."""
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Turns health NOT_SERVING, refuses new calls and drains in-flight ones."""
        await self.set_not_serving()
        await self.server.stop(grace_s)


def _check_free(bind: str) -> None:
    """Refuses a taken address before gRPC's core tries it (it logs its own multi-line error
    to stderr, then only says that binding failed)."""
    host, _, port = bind.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as exc:
            raise BindError(bind, "CHATMESH_GRPC_BIND", exc.strerror or str(exc)) from exc


async def start_grpc_server(
    bind: str,
    registrations: Sequence[Registration],
    service_names: Sequence[str],
    max_message_bytes: int = 8 * 1024 * 1024,
    tls: TlsSettings | None = None,
) -> GrpcServer:
    """Starts a server on `bind` (host:port, port 0 picks a free one) with the given services;
    with a certificate in `tls` it listens with TLS only."""
    server = grpc.aio.server(
        interceptors=[_MetricsInterceptor()],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    for add, servicer in registrations:
        add(servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    _check_free(bind)
    credentials = tls.server_credentials() if tls is not None else None
    try:
        if credentials is None:
            port = server.add_insecure_port(bind)
        else:
            port = server.add_secure_port(bind, credentials)
    except RuntimeError as exc:  # grpcio >= 1.6x raises where older versions returned 0
        raise BindError(bind, "CHATMESH_GRPC_BIND", "address in use or unavailable") from exc
    if port == 0:
        raise BindError(bind, "CHATMESH_GRPC_BIND", "address in use or unavailable")
    await server.start()
    for name in (*names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    security = "plaintext"
    if tls is not None and credentials is not None:
        security = "mutual TLS" if tls.client_auth else "TLS"
    log.info("gRPC serving %s on port %d (%s)", ", ".join(names), port, security)
    return GrpcServer(server, port, health_servicer, names)
