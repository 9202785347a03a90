"""presence_service's questions to chat_service's AccessService, and a short cache of answers.

Every question is asked on a user's behalf with that user's token, so chat_service verifies who
asks. Presence visibility answers are cached per (viewer, subject) for a few seconds: heartbeats
never ask, and a watcher's events mostly hit the cache. Typing audiences are not cached: each
typing signal is checked at the time it is sent (SPEC guarantee 5), and typing is rate limited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from chatmesh.chat.v1 import access_service_pb2 as pb
from chatmesh.chat.v1 import access_service_pb2_grpc

from chatmesh_common.auth import auth_metadata
from chatmesh_common.clock import Clock


class AccessError(Exception):
    """chat_service refused or could not answer; `code` is the gRPC status to pass on."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AccessClient(Protocol):
    async def visible_subjects(self, token: str, subjects: Sequence[str]) -> list[str]:
        """The subjects whose presence the token's user may see."""
        ...

    async def typing_audience(self, token: str, conversation_id: str) -> list[str]:
        """Who gets the token's user's typing in a conversation; AccessError if not a member."""
        ...


class GrpcAccessClient:
    """AccessService over gRPC. The channel may be given later (`chatmesh dev` serves
    AccessService on the same server as presence, whose port is known only once it started)."""

    def __init__(self, channel: grpc.aio.Channel | None = None, timeout_s: float = 2.0) -> None:
        self._stub: Any = None
        self._timeout_s = timeout_s
        if channel is not None:
            self.set_channel(channel)

    def set_channel(self, channel: grpc.aio.Channel) -> None:
        self._stub = access_service_pb2_grpc.AccessServiceStub(channel)

    async def _call(self, method: str, request: Any, token: str) -> Any:
        if self._stub is None:
            raise AccessError(grpc.StatusCode.UNAVAILABLE, "access service not connected yet")
        try:
            return await getattr(self._stub, method)(
                request, metadata=auth_metadata(token), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
            ):
                code = grpc.StatusCode.UNAVAILABLE
            raise AccessError(code, f"access check: {exc.details()}") from exc

    async def visible_subjects(self, token: str, subjects: Sequence[str]) -> list[str]:
        response = await self._call(
            "FilterPresenceAudience",
            pb.FilterPresenceAudienceRequest(subject_user_ids=list(subjects)),
            token,
        )
        return list(response.visible_user_ids)

    async def typing_audience(self, token: str, conversation_id: str) -> list[str]:
        response = await self._call(
            "CheckTypingAudience",
            pb.CheckTypingAudienceRequest(conversation_id=conversation_id),
            token,
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

    async def visible(self, viewer: str, token: str, subjects: Sequence[str]) -> set[str]:
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
            allowed = set(await self._client.visible_subjects(token, missing))
            if len(self._entries) + len(missing) > self._max_entries:
                self._entries.clear()
            if self._ttl_s > 0:
                for subject in missing:
                    self._entries[(viewer, subject)] = (subject in allowed, now + self._ttl_s)
            answer |= allowed & set(missing)
        return answer
