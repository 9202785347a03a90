"""presence_service's questions to chat_service's AccessService, and a short cache of answers.

Every question is asked with presence_service's own service token (chatmesh_common.auth
`ServiceCredential`, scope `chat.access`) and names the user it is about; a user token cannot ask
them (docs/identity.md). Presence visibility answers are cached per (viewer, subject) for a few
seconds: heartbeats never ask, and a watcher's events mostly hit the cache. Typing audiences are
not cached: each typing signal is checked at the time it is sent (SPEC guarantee 5), and typing is
rate limited.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import access_service_pb2_grpc

from chatmesh_common.auth import ServiceCredential
from chatmesh_common.clock import Clock
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS
from chatmesh_common.rpc import RpcError

log = logging.getLogger(__name__)

# The name presence_service's service tokens carry, and the scopes they need.
SERVICE_NAME = "presence"
SCOPES = (SCOPE_CHAT_ACCESS,)
# Refusals that concern the user asked about, passed on as they are; any other answer means
# chat_service could not answer (or refused presence_service itself): UNAVAILABLE to the caller.
_PASSED_ON = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


def presence_credential(service_secret: str) -> ServiceCredential:
    """presence_service's service credential, signed with the service secret."""
    return ServiceCredential(service_secret, SERVICE_NAME, SCOPES)


class AccessClient(Protocol):
    async def visible_subjects(self, viewer: str, subjects: Sequence[str]) -> list[str]:
        """The subjects whose presence `viewer` may see."""
        ...

    async def typing_audience(self, user_id: str, conversation_id: str) -> list[str]:
        """Who gets `user_id`'s typing in a conversation; RpcError if not a member."""
        ...


class GrpcAccessClient:
    """AccessService over gRPC. The channel may be given later (`chatmesh dev` serves
    AccessService on the same server as presence, whose port is known only once it started)."""

    def __init__(
        self,
        credential: ServiceCredential,
        channel: grpc.aio.Channel | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._credential = credential
        self._stub: Any = None
        self._timeout_s = timeout_s
        if channel is not None:
            self.set_channel(channel)

    def set_channel(self, channel: grpc.aio.Channel) -> None:
        self._stub = access_service_pb2_grpc.AccessServiceStub(channel)

    async def _call(self, method: str, request: Any) -> Any:
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
                log.error("chat_service refused presence_service's credential: %s", exc.details())
            if code not in _PASSED_ON:
                code = grpc.StatusCode.UNAVAILABLE
            raise RpcError(code, f"access check: {exc.details()}") from exc

    async def visible_subjects(self, viewer: str, subjects: Sequence[str]) -> list[str]:
        response = await self._call(
            "FilterPresenceAudience",
            pb.FilterPresenceAudienceRequest(viewer_user_id=viewer, subject_user_ids=subjects),
        )
        return list(response.visible_user_ids)

    async def typing_audience(self, user_id: str, conversation_id: str) -> list[str]:
        response = await self._call(
            "CheckTypingAudience",
            pb.CheckTypingAudienceRequest(conversation_id=conversation_id, user_id=user_id),
        )
        return list(response.recipient_ids)


class VisibilityCache:
    """(viewer, subject) -> visible, for `ttl_s` seconds of the clock's monotonic time."""

    def __init__(
        self, client: AccessClient, clock: Clock, ttl_s: float = 2.0, max_entries: int = 200_000
    ) -> None:
        self._client = client
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[bool, float]] = {}

    async def visible(self, viewer: str, subjects: Sequence[str]) -> set[str]:
        now = self._clock.monotonic()
        answer: set[str] = set()
        missing: list[str] = []
        for subject in dict.fromkeys(subjects):
            if subject == viewer:
                answer.add(subject)
                continue
            cached = self._entries.get((viewer, subject))
            if cached is not None and cached[1] > now:
                if cached[0]:
                    answer.add(subject)
            else:
                missing.append(subject)
        if missing:
            allowed = set(await self._client.visible_subjects(viewer, missing))
            if len(self._entries) + len(missing) > self._max_entries:
                self._entries.clear()
            if self._ttl_s > 0:
                for subject in missing:
                    self._entries[(viewer, subject)] = (subject in allowed, now + self._ttl_s)
            answer |= allowed & set(missing)
        return answer
