"""The RPC plumbing every servicer shares: one error type, caller authentication, the unary and
streaming wrappers, and the proto time conversions.

A servicer method is written as `async def Method(self, request, caller) -> Response` (or an
async generator for a server stream) and decorated with `@unary` or `@stream`. The wrapper

* authenticates the caller with the credential the RPC requires (chatmesh_common.credentials):
  UNAUTHENTICATED for no, a bad or an expired token, PERMISSION_DENIED for a valid token of the
  wrong kind or a service token without the scope;
* turns an `RpcError`, or an exception listed in the servicer's `ERRORS`, into its status, with
  a retry-after as trailing metadata (`retry-after-ms`);
* lets anything else propagate: gRPC answers UNKNOWN and logs it; nothing is swallowed.

Calls through chatmesh_common.local_channel run the same handlers, so they pass the same checks.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import ClassVar, Protocol, TypeVar, cast

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh_common.auth import (
    Identity,
    ServiceIdentity,
    ServiceTokenVerifier,
    TokenError,
    TokenVerifier,
    bearer_token,
    user_token_verifier,
)
from chatmesh_common.credentials import Kind, Requirement, requirement
from chatmesh_common.grpc_server import Context
from chatmesh_common.identity import IssuerSettings
from chatmesh_common.limits import LIMITS, MAX_TOKEN_LEEWAY_S

RETRY_AFTER_KEY = "retry-after-ms"

Caller = Identity | ServiceIdentity


class RpcError(Exception):
    """A refused request: a gRPC status code, a message that names the field or rule, and for
    RESOURCE_EXHAUSTED the seconds after which a retry may succeed."""

    def __init__(
        self, code: grpc.StatusCode, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """`retry-after-ms` (rounded up, at least 1) when there is a retry-after."""
        if self.retry_after_s is None or self.retry_after_s <= 0:
            return ()
        return ((RETRY_AFTER_KEY, str(max(1, math.ceil(self.retry_after_s * 1000)))),)

    def __repr__(self) -> str:
        return f"RpcError({self.code.name}, {self.message!r})"


def invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def denied(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.PERMISSION_DENIED, message)


def precondition(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.FAILED_PRECONDITION, message)


def not_found(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, message)


def check_id(field: str, value: str, max_chars: int = LIMITS.max_id_chars) -> None:
    """INVALID_ARGUMENT naming `field` unless `value` is 1 to `max_chars` characters."""
    if not value:
        raise invalid(f"{field} is required")
    if len(value) > max_chars:
        raise invalid(f"{field} must be at most {max_chars} characters")


def timestamp(seconds: float) -> Timestamp:
    """A protobuf Timestamp of a clock reading (seconds since the epoch)."""
    whole = math.floor(seconds)
    return Timestamp(seconds=whole, nanos=min(999_999_999, round((seconds - whole) * 1e9)))


def duration(seconds: float) -> Duration:
    out = Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _unauthenticated(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.UNAUTHENTICATED, message)


class TokenConfig(Protocol):
    """The token settings every service's config has (chatmesh_common.settings' helpers)."""

    @property
    def jwt_secret(self) -> str: ...

    @property
    def service_secret(self) -> str: ...

    @property
    def token_leeway_s(self) -> float: ...

    @property
    def identity(self) -> IssuerSettings: ...


class Authenticator:
    """Checks a call's credential against what its RPC requires (see the module docstring).

    `services` is None on a server given no service secret: it accepts no service token, so its
    internal-only RPCs refuse every caller.
    """

    def __init__(self, users: TokenVerifier, services: ServiceTokenVerifier | None = None) -> None:
        self._users = users
        self._services = services
        # (service, method) -> its requirement and the name refusals use, looked up once.
        self._rules: dict[tuple[str, str], tuple[Requirement | None, str]] = {}

    @classmethod
    def from_secrets(
        cls,
        user_secret: str,
        service_secret: str = "",
        *,
        leeway_s: float = MAX_TOKEN_LEEWAY_S,
        clock: Callable[[], float] = time.time,
        issuer: IssuerSettings | None = None,
    ) -> Authenticator:
        """Verifiers for both kinds; no service secret: no service token is accepted. User
        tokens from the configured identity provider (`issuer`) are accepted too."""
        if service_secret == user_secret:
            raise ValueError("the service secret must differ from the user token secret")
        services = ServiceTokenVerifier(service_secret, leeway_s, clock) if service_secret else None
        return cls(user_token_verifier(user_secret, leeway_s, clock, issuer), services)

    @classmethod
    def for_config(cls, config: TokenConfig, clock: Callable[[], float]) -> Authenticator:
        """`from_secrets` with a service's own token settings, as every service builds it."""
        return cls.from_secrets(
            config.jwt_secret,
            config.service_secret,
            leeway_s=config.token_leeway_s,
            clock=clock,
            issuer=config.identity,
        )

    def authenticate(
        self, metadata: Iterable[tuple[str, str | bytes]] | None, service: str, method: str
    ) -> Caller:
        key = (service, method)
        known = self._rules.get(key)
        if known is None:
            known = self._rules[key] = (
                requirement(service, method),
                f"{service.rpartition('.')[2]}.{method}",
            )
        rule, name = known
        if rule is None:
            # Fail closed: an RPC nobody classified is served to nobody.
            raise RpcError(grpc.StatusCode.INTERNAL, f"{name} has no entry in the credential table")
        if rule.kind is Kind.PER_STREAM:
            # Its servicer checks each stream's token as the stream's own RPC; a call-level
            # check here would be a mistake in that servicer.
            raise RpcError(grpc.StatusCode.INTERNAL, f"{name} checks {rule.describe()}")
        token = bearer_token(metadata)
        if not token:
            raise _unauthenticated(f"missing token: {name} requires {rule.describe()}")
        if rule.kind is Kind.USER:
            return self._as_user(token, name)
        if rule.kind is Kind.SERVICE:
            return self._as_service(token, name, rule)
        if self._services is not None and self._verifies(self._services, token):
            return self._as_service(token, name, rule)
        return self._as_user(token, name)

    def _as_user(self, token: str, name: str) -> Identity:
        try:
            return self._users.verify(token)
        except TokenError as exc:
            if self._services is not None and self._verifies(self._services, token):
                raise denied(
                    f"{name} requires a user token; a service credential cannot act as a user"
                ) from exc
            raise _unauthenticated(str(exc)) from exc

    def _as_service(self, token: str, name: str, rule: Requirement) -> ServiceIdentity:
        try:
            if self._services is None:
                raise TokenError("this server accepts no service tokens (no service secret)")
            caller = self._services.verify(token)
        except TokenError as exc:
            if self._verifies(self._users, token):
                raise denied(
                    f"{name} is internal: it requires a service token with scope "
                    f"{rule.scope}, not a user token"
                ) from exc
            raise _unauthenticated(str(exc)) from exc
        if rule.scope not in caller.scopes:
            raise denied(
                f"{name} requires scope {rule.scope}; service {caller.service} has "
                f"{' '.join(sorted(caller.scopes)) or 'no scopes'}"
            )
        return caller

    @staticmethod
    def _verifies(verifier: TokenVerifier | ServiceTokenVerifier, token: str) -> bool:
        try:
            verifier.verify(token)
        except TokenError:
            return False
        return True


class RpcServicer:
    """Base of every servicer: the service it implements, its authenticator, and the domain
    exceptions it answers with a status (matched along the exception's classes)."""

    SERVICE: ClassVar[str]
    ERRORS: ClassVar[Mapping[type[Exception], grpc.StatusCode]] = {}

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def _caller(self, context: Context, method: str) -> Caller:
        return self.authenticator.authenticate(context.invocation_metadata(), self.SERVICE, method)

    def _rpc_error(self, exc: Exception) -> RpcError | None:
        if isinstance(exc, RpcError):
            return exc
        for klass in type(exc).__mro__:
            code = self.ERRORS.get(klass)
            if code is not None:
                return RpcError(code, str(exc) or klass.__name__)
        return None


async def abort(context: Context, error: RpcError) -> None:
    """Ends the call with the error's status, message and retry-after (raises)."""
    await context.abort(error.code, error.message, error.trailing_metadata())


S = TypeVar("S", bound=RpcServicer)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
C = TypeVar("C", bound=Caller)


def unary(
    method: Callable[[S, Req, C], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    """A unary servicer method: authenticated caller in, refusals out as statuses."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(self: S, request: Req, context: Context) -> Resp:
        try:
            caller = self._caller(context, name)
            return await method(self, request, cast(C, caller))
        except Exception as exc:
            error = self._rpc_error(exc)
            if error is None:
                raise
        # Outside the except block: abort raises, and must not chain onto the refusal.
        await abort(context, error)
        raise AssertionError("unreachable: abort raises")

    return handler


def stream(
    method: Callable[[S, Req, C], AsyncIterator[Resp]],
) -> Callable[[S, Req, Context], AsyncIterator[Resp]]:
    """A server-streaming servicer method, like `unary`; the method's generator is closed (its
    `finally` runs) when the call ends, however it ends."""
    name = method.__name__

    @functools.wraps(method)
    async def handler(self: S, request: Req, context: Context) -> AsyncIterator[Resp]:
        error: RpcError | None = None
        try:
            caller = self._caller(context, name)
            items = method(self, request, cast(C, caller))
            try:
                async for item in items:
                    yield item
            finally:
                # Closed now, not whenever it is collected: its `finally` releases the stream.
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await aclose()
        except Exception as exc:
            error = self._rpc_error(exc)
            if error is None:
                raise
        if error is not None:
            await abort(context, error)

    return handler
