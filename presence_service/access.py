"""presence_service's questions to chat_service's AccessService, and a short cache of answers.

Every question is asked with presence_service's own service token (chatmesh_common.auth
`ServiceCredential`, scope `chat.access`) and names the user it is about; a user token cannot ask
them (docs/identity.md). Presence visibility answers are cached per (viewer, subject) for a few
seconds: heartbeats never ask, and a watcher's events mostly hit the cache. Typing audiences are
not cached: each typing signal is checked at the time it is sent (SPEC guarantee 5), and typing is
rate limited. Suspensions are asked the same way, never cached: the typing audience check refuses
a suspended typer, and a custom status text is checked with `require_active` before it is set,
so a suspension binds presence from the moment SuspendUser returns, on every presence replica.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import grpc
from chatmesh.chat.v1 import access_service_pb2 as pb

from chatmesh_common.access_client import AccessServiceClient
from chatmesh_common.auth import ServiceCredential
from chatmesh_common.clock import Clock
from chatmesh_common.credentials import SCOPE_CHAT_ACCESS

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
        """Who gets `user_id`'s typing in a conversation; RpcError if not a member or
        suspended."""
        ...

    async def require_active(self, user_id: str) -> None:
        """RpcError (PERMISSION_DENIED naming the suspension) if `user_id` is suspended."""
        ...


class GrpcAccessClient(AccessServiceClient):
    """AccessClient over AccessService; refusals about the user asked for are passed on."""

    def __init__(
        self,
        credential: ServiceCredential,
        channel: grpc.aio.Channel | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(credential, channel, timeout_s, passed_on=_PASSED_ON)

    async def visible_subjects(self, viewer: str, subjects: Sequence[str]) -> list[str]:
        response = await self.call(
            "FilterPresenceAudience",
            pb.FilterPresenceAudienceRequest(viewer_user_id=viewer, subject_user_ids=subjects),
        )
        return list(response.visible_user_ids)

    async def typing_audience(self, user_id: str, conversation_id: str) -> list[str]:
        response = await self.call(
            "CheckTypingAudience",
            pb.CheckTypingAudienceRequest(conversation_id=conversation_id, user_id=user_id),
        )
        return list(response.recipient_ids)

    async def require_active(self, user_id: str) -> None:
        await self.call("CheckUserActive", pb.CheckUserActiveRequest(user_id=user_id))


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
