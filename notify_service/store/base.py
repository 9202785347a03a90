"""What notify_service keeps, behind one Protocol: devices and their push targets, users' settings,
the push queue, the sent set and dead letters.

The queue holds one row per (user, device, conversation, seq, kind) for ever (a key is never
queued twice), so an event the consumer gets again, or a restart, never pushes twice. A row moves
`queued` -> `inflight` (claimed by the delivery loop) -> `sent` | `queued` again (a retry, with a
later `not_before`) | `dead` | `gone` (the target was pruned); `cancelled` (the message was
deleted or read first) and `coalesced` (a newer push of the same conversation replaced it) end
it too. The sent set records each (user, device, conversation, seq) a provider accepted.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..providers.base import Platform, PushMessage, PushTarget


class Preview(enum.IntEnum):
    """How much of a message a push shows; values match chatmesh.notify.v1.PreviewLevel."""

    FULL = 1
    SENDER_ONLY = 2
    GENERIC = 3
    ID_ONLY = 4


class Level(enum.IntEnum):
    """Which messages push; values match chatmesh.notify.v1.NotifyLevel (DEFAULT: by kind)."""

    DEFAULT = 0
    ALL = 1
    MENTIONS = 2
    NONE = 3


class PushKind(enum.StrEnum):
    # An alert for a new message.
    MESSAGE = "message"
    # A silent update after a read: clears the conversation's notifications, sets the badge.
    CLEAR = "clear"


class State(enum.StrEnum):
    QUEUED = "queued"
    INFLIGHT = "inflight"
    SENT = "sent"
    DEAD = "dead"
    GONE = "gone"
    CANCELLED = "cancelled"
    COALESCED = "coalesced"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    user_id: str
    device_id: str
    target: PushTarget
    registered_at: float


@dataclass(frozen=True, slots=True)
class ConversationSetting:
    conversation_id: str
    level: Level = Level.DEFAULT
    # Seconds since the epoch; None: not muted until a time.
    muted_until: float | None = None
    muted_forever: bool = False

    def muted(self, now: float) -> bool:
        return self.muted_forever or (self.muted_until is not None and self.muted_until > now)

    @property
    def is_default(self) -> bool:
        return self.level is Level.DEFAULT and self.muted_until is None and not self.muted_forever


@dataclass(frozen=True, slots=True)
class UserSettings:
    preview: Preview = Preview.FULL
    conversations: tuple[ConversationSetting, ...] = ()


@dataclass(frozen=True, slots=True)
class NewPush:
    user_id: str
    device_id: str
    conversation_id: str
    # The message's seq; for CLEAR the read marker's seq.
    seq: int
    kind: PushKind
    message: PushMessage
    # When the event was committed (push lag is measured from here).
    event_at: float
    not_before: float


@dataclass(frozen=True, slots=True)
class QueuedPush:
    push_id: int
    user_id: str
    device_id: str
    conversation_id: str
    seq: int
    kind: PushKind
    message: PushMessage
    event_at: float
    not_before: float
    # Tries made so far, this claim included.
    attempts: int
    state: State
    last_error: str = ""
    # Messages this push stands for (a burst coalesced into one notification).
    count: int = 1
    # Its device's push target as `claim` found it (None there: the device has none now);
    # None from `get_push`, which does not look.
    target: PushTarget | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    dead_letter_id: int
    push_id: int
    user_id: str
    device_id: str
    platform: Platform
    conversation_id: str
    seq: int
    kind: PushKind
    attempts: int
    last_error: str
    failed_at: float
    pending: bool = True


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    # Pushes queued now.
    queued: int = 0
    # Keys already queued or sent before (a redelivered event).
    repeated: int = 0
    # Queued pushes of the same device and conversation replaced by a new one.
    coalesced: int = 0


class NotifyStore(Protocol):
    async def open(self) -> None:
        """Creates what is missing; pushes left `inflight` by a stopped process are queued again."""
        ...

    async def close(self) -> None: ...

    # Devices
    async def register_device(
        self, user_id: str, device_id: str, target: PushTarget, now: float
    ) -> DeviceRecord:
        """Sets the device's target; the same (platform, token) anywhere else is removed."""
        ...

    async def unregister_device(self, user_id: str, device_id: str) -> bool: ...

    async def list_devices(self, user_id: str) -> list[DeviceRecord]: ...

    async def devices_of(self, user_ids: Sequence[str]) -> dict[str, list[DeviceRecord]]:
        """`list_devices` of several users in one round trip (the consumer asks it per message);
        a user with no device is absent."""
        ...

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None: ...

    async def remove_target(self, user_id: str, device_id: str, token: str) -> bool:
        """Removes the device's target if it is still `token` (a provider said it is gone);
        the device's queued pushes end as `gone`."""
        ...

    # Settings
    async def get_settings(self, user_id: str) -> UserSettings: ...

    async def update_settings(
        self,
        user_id: str,
        preview: Preview | None,
        conversations: Sequence[ConversationSetting],
    ) -> UserSettings:
        """Sets the preview level (None: unchanged) and replaces each conversation's settings
        (a default one is removed)."""
        ...

    async def settings_for(
        self, user_ids: Sequence[str], conversation_id: str
    ) -> dict[str, tuple[Preview, ConversationSetting]]:
        """Each user's preview level and settings for one conversation (defaults if none)."""
        ...

    # The queue
    async def enqueue(self, pushes: Sequence[NewPush], min_interval_s: float) -> EnqueueResult:
        """Queues the pushes whose key was never queued.

        A MESSAGE push replaces a still-queued MESSAGE push of the same device and conversation
        (that one ends `coalesced`; the new one counts both and keeps the earlier not_before, so
        a push waiting for its retry holds the newer one back too). Otherwise a push waits
        `min_interval_s` after the device's last sent push.
        """
        ...

    async def cancel(
        self, conversation_id: str, seq: int, user_id: str | None = None, up_to: bool = False
    ) -> int:
        """Cancels queued MESSAGE pushes of `seq` (of all seqs up to it with `up_to`), of
        everybody or of one user; how many."""
        ...

    async def claim(self, now: float, limit: int) -> list[QueuedPush]:
        """Up to `limit` queued pushes due at `now` (oldest first), now `inflight`, each with
        one more attempt counted and its device's current target."""
        ...

    async def next_due(self) -> float | None:
        """The earliest not_before of a queued push; None when none is queued."""
        ...

    async def mark_sent(self, push_ids: Sequence[int], now: float) -> None:
        """Records the pushes a provider accepted, in one round trip (the delivery loop
        gathers the calls that finished together)."""
        ...

    async def retry(self, push_id: int, not_before: float, error: str) -> None: ...

    async def dead_letter(self, push_id: int, error: str, now: float) -> DeadLetterRecord: ...

    async def finish(self, push_id: int, state: State, error: str = "") -> None:
        """Ends a push without sending it (gone, cancelled)."""
        ...

    async def get_push(self, push_id: int) -> QueuedPush | None: ...

    async def was_sent(
        self, user_id: str, device_id: str, conversation_id: str, seq: int, kind: PushKind
    ) -> bool: ...

    async def pushed_since_clear(self, user_id: str, conversation_id: str) -> bool:
        """Whether a MESSAGE push of the conversation was queued or sent to the user after
        the last CLEAR: only then is there a notification to clear."""
        ...

    async def purge(self, before: float) -> int:
        """Forgets finished pushes (and sent-set keys) of events older than `before`; dead
        letters stay. `before` must lie beyond the event log's max age, or an event redelivered
        after its push was forgotten could push again. How many rows it removed."""
        ...

    # Dead letters
    async def list_dead_letters(
        self, user_id: str | None, before_id: int | None, limit: int
    ) -> list[DeadLetterRecord]:
        """Newest first; `before_id` continues a page."""
        ...

    async def replay_dead_letter(self, dead_letter_id: int, now: float) -> DeadLetterRecord | None:
        """Queues the push again with no attempts; None when there is no such dead letter."""
        ...
