"""SIGKILL of notify_service while devices send: chat goes on untouched (the send path never
waits for push), and after the restart every push-eligible message reaches each offline member's
webhook exactly once: none lost, none doubled. The one repeat docs/notify.md names (the receiver
took a push in the instant before the kill, before `sent` was written) comes with the same
Idempotency-Key, which the receiver drops: it may only happen to a push taken before the kill.

Exactly once counts a burst as docs/notify.md defines it: a message arriving while an earlier
push of the same device and conversation is still queued replaces that push, whose `count`
grows. So per (device, conversation) the pushes' counts add up to the eligible messages, each
push names a distinct eligible seq, and the last message is always pushed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from chatmesh.chat.v1 import types_pb2
from chatmesh.notify.v1 import notify_service_pb2 as notify_pb
from chatmesh.notify.v1 import notify_service_pb2_grpc

from chatmesh_common.auth import auth_metadata
from tests.bus_nats.cluster import token
from tests.servers.webhook import LocalWebhookReceiver

from .check import Figures, StoredConversation
from .load import Device
from .profile import Profile, current_profile
from .scenario import Cluster, Group, run_fault

pytestmark = [
    pytest.mark.faults,
    pytest.mark.nats,
    pytest.mark.redis,
    pytest.mark.timeout(current_profile().timeout_s),
]

OFFLINE_PER_GROUP = 1
DEVICE = "phone"
# A hang guard for the pushes to arrive after the load: not a timing assertion.
PUSH_GUARD_S = 90.0
# After every expected push arrived: longer than the claim lease (3 s), so a push sent again
# after a lease ran out would show here.
SETTLE_S = 5.0
# CHATMESH_NOTIFY_CONCURRENCY's default: at most this many calls were in flight at the kill.
CONCURRENCY = 16

Stream = tuple[str, str]  # (webhook path, i.e. user and device; conversation)
PushKey = tuple[str, str, int]  # a stream's push for one seq


@dataclass
class Pushes:
    """What the receiver got: copies per push, and the messages each push stands for."""

    copies: Counter[PushKey] = field(default_factory=Counter)
    counts: dict[PushKey, int] = field(default_factory=dict)
    # Idempotency-Key -> the push it named.
    keys: dict[str, PushKey] = field(default_factory=dict)

    @classmethod
    def of(cls, receiver: LocalWebhookReceiver) -> Pushes:
        pushes = cls()
        for got in list(receiver.received):
            data = got.payload["data"]
            if data.get("type") == "message":
                key = (got.path, data["conversation_id"], int(data["seq"]))
                pushes.copies[key] += 1
                pushes.counts.setdefault(key, int(data["count"]))
                pushes.keys[got.headers["idempotency-key"]] = key
        return pushes

    def covered(self) -> Counter[Stream]:
        """Per stream, the messages its pushes stand for (a repeated push counted once)."""
        total: Counter[Stream] = Counter()
        for (path, cid, _seq), count in self.counts.items():
            total[(path, cid)] += count
        return total


def _path(user: str) -> str:
    return f"/{user}/{DEVICE}"


def _eligible(
    groups: Sequence[Group], store: Mapping[str, StoredConversation]
) -> dict[Stream, list[int]]:
    """Each offline member's device: the seqs of the run's messages (creation is a system
    event), in order."""
    return {
        (_path(user), group.conversation_id): sorted(
            seq
            for seq, message in store[group.conversation_id].messages.items()
            if message.kind != types_pb2.MESSAGE_KIND_SYSTEM and not message.deleted
        )
        for group in groups
        for user in group.offline
    }


def _all_covered(pushes: Pushes, eligible: Mapping[Stream, list[int]]) -> bool:
    covered = pushes.covered()
    return all(covered[stream] >= len(seqs) for stream, seqs in eligible.items())


def _excess(pushes: Pushes, eligible: Mapping[Stream, list[int]]) -> Counter[Stream]:
    """Per stream, messages its pushes stand for more than once: a push the dead process had
    sent, queued again after its lease and replaced by a later one before it was claimed."""
    covered = pushes.covered()
    return Counter({k: covered[k] - len(s) for k, s in eligible.items() if covered[k] > len(s)})


def _problems(
    pushes: Pushes,
    eligible: Mapping[Stream, list[int]],
    before_kill: set[PushKey],
    repeats: Counter[str],
) -> list[str]:
    problems = []
    covered = pushes.covered()
    for stream, seqs in eligible.items():
        if covered[stream] < len(seqs):
            problems.append(f"{stream}: pushes stand for {covered[stream]} of {len(seqs)}")
        if seqs and (*stream, seqs[-1]) not in pushes.counts:
            problems.append(f"{stream}: the last message {seqs[-1]} was not pushed")
    unexpected = [k for k in pushes.counts if k[2] not in eligible.get((k[0], k[1]), [])]
    problems += [f"pushed but not eligible: {key}" for key in sorted(unexpected)[:20]]
    # Two copies of one seq that the receiver did not drop: they had different keys.
    doubled = {key: n for key, n in pushes.copies.items() if n > 1}
    if doubled:
        problems.append(f"pushed twice under different idempotency keys: {doubled}")
    # The documented window: a push taken just before the kill, sent again as itself (same
    # key, dropped by the receiver) or folded into a later push; at most one per delivery slot.
    repeated = {pushes.keys.get(key) for key in repeats}
    if not repeated <= before_kill:
        problems.append(f"a repeat of a push not taken before the kill: {repeated - before_kill}")
    excess = _excess(pushes, eligible)
    killed_streams = {(path, cid) for path, cid, _seq in before_kill}
    if not set(excess) <= killed_streams:
        problems.append(f"folded into a later push outside the kill's window: {excess}")
    if sum(repeats.values()) + sum(excess.values()) > CONCURRENCY:
        problems.append(f"more repeats than calls in flight at the kill: {repeats} {excess}")
    return problems


async def test_sigkill_of_notify_pushes_every_message_once_after_the_restart(
    notify_cluster: Cluster,
    webhook_receiver: LocalWebhookReceiver,
    profile: Profile,
    record_figures: Callable[[Figures], None],
) -> None:
    """notify_service killed mid-load and restarted: chat loses nothing; no push lost or doubled."""
    doomed = notify_cluster.notify
    assert doomed is not None
    stub: Any = notify_service_pb2_grpc.NotifyServiceStub(doomed.channel)
    extra: dict[str, float] = {}
    before_kill: set[PushKey] = set()

    async def register(groups: Sequence[Group], _devices: Sequence[Device]) -> None:
        for user in (u for g in groups for u in g.offline):
            target = notify_pb.PushTarget(
                platform=notify_pb.PLATFORM_WEBHOOK, token=webhook_receiver.url(_path(user))
            )
            await stub.RegisterDevice(
                notify_pb.RegisterDeviceRequest(target=target),
                metadata=auth_metadata(token(user, DEVICE)),
                timeout=15,
            )

    async def fault() -> None:
        # Killed while pushes flow: only once some arrived (a hang guard, never a timing check).
        async with asyncio.timeout(PUSH_GUARD_S):
            while not webhook_receiver.received:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await doomed.kill()
        await asyncio.sleep(profile.outage_s)
        # What the dead process sent: requests it wrote just before the kill may be read and
        # recorded only after, never later than this.
        before_kill.update(Pushes.of(webhook_receiver).copies)
        extra["pushes_before_kill"] = len(before_kill)
        await doomed.start()

    async def check_pushes(
        groups: Sequence[Group], store: Mapping[str, StoredConversation]
    ) -> list[str]:
        eligible = _eligible(groups, store)
        waited_at = time.monotonic()
        try:
            async with asyncio.timeout(PUSH_GUARD_S):
                while not _all_covered(Pushes.of(webhook_receiver), eligible):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pass  # reported below as lost
        extra["pushes_drain_s"] = time.monotonic() - waited_at
        await asyncio.sleep(SETTLE_S)
        pushes = Pushes.of(webhook_receiver)
        covered = pushes.covered()
        expected = sum(len(seqs) for seqs in eligible.values())
        extra.update(
            pushes_expected=expected,
            pushes_received=sum(pushes.copies.values()),
            pushes_coalesced=sum(min(covered[k], len(s)) for k, s in eligible.items())
            - len(pushes.counts),
            pushes_lost=sum(max(0, len(s) - covered[k]) for k, s in eligible.items()),
            pushes_doubled=sum(n - 1 for n in pushes.copies.values()),
            pushes_repeats_dropped=sum(webhook_receiver.repeats.values()),
            pushes_refolded=sum(_excess(pushes, eligible).values()),
        )
        problems = _problems(pushes, eligible, before_kill, webhook_receiver.repeats)
        if webhook_receiver.rejected:
            problems.append(f"webhooks with a bad signature: {webhook_receiver.rejected[:3]}")
        return problems

    await run_fault(
        notify_cluster,
        profile,
        "notify-sigkill",
        fault,
        record_figures,
        extra,
        offline_per_group=OFFLINE_PER_GROUP,
        prepare=register,
        check=check_pushes,
    )
