"""One fault run: groups and devices on a cluster, steady load, the fault, recovery, the checks.

    figures = await run_fault(cluster, profile, "chat-kill", fault)

`fault()` injects the fault and repairs it (e.g. SIGKILL, then start again) while the devices
send. Recovery is the time from the fault until every device had a send acknowledged that it
first tried after the fault began: reported, never asserted (60 s is only a hang guard).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from tests.bus_nats.cluster import Api, ChatProcess, GatewayProcess
from tests.servers.services import (
    MediaServiceProcess,
    NotifyServiceProcess,
    PresenceServiceProcess,
)

from .check import Figures, StoredConversation, read_conversation, verify
from .load import Device, LoadDriver
from .profile import Profile
from .proxy import FaultProxy

GROUP = 2
RECOVERY_GUARD_S = 60.0
# g1's deadline per call in the short-deadline cluster (conftest.short_deadline_cluster).
SHORT_DEADLINE_S = 1.0

Fault = Callable[[], Awaitable[None]]


@dataclass
class Cluster:
    """chat replicas a and b on one store and one NATS; gateway g1 reaches a through `proxy`,
    g2 reaches b directly; presence, notify and media services where the cluster has them."""

    chats: list[ChatProcess]
    gateways: list[GatewayProcess]
    proxy: FaultProxy
    presence: PresenceServiceProcess | None = None
    notify: NotifyServiceProcess | None = None
    media: MediaServiceProcess | None = None


@dataclass(frozen=True)
class Group:
    conversation_id: str
    owner: str
    members: list[str]  # each has a device in the load
    offline: list[str]  # members with no socket at all (the push audience)


# Runs once the groups and devices exist, before the load (e.g. registers push targets).
Prepare = Callable[[Sequence[Group], Sequence[Device]], Awaitable[None]]
# Runs after the store was read back: more broken promises (empty: none); may fill `extra`.
ExtraCheck = Callable[[Sequence[Group], Mapping[str, StoredConversation]], Awaitable[list[str]]]


async def _create_groups(chat: ChatProcess, profile: Profile, offline: int) -> list[Group]:
    groups = []
    for g in range(profile.groups):
        users = [f"u{g}x{i}" for i in range(profile.users_per_group)]
        away = [f"u{g}off{i}" for i in range(offline)]
        cid = await Api(chat, users[0]).create(GROUP, *users[1:], *away, title=f"group {g}")
        groups.append(Group(cid, users[0], users, away))
    return groups


async def _subscriber_groups(
    chat: ChatProcess, profile: Profile, count: int, url: str, other_urls: Sequence[str]
) -> tuple[list[Group], list[Device]]:
    """`count` idle devices on `url`, one user each, in groups of profile.sockets_per_group
    whose owner sends every profile.socket_interval_s (from the same gateway)."""
    groups: list[Group] = []
    devices: list[Device] = []
    urls = [url, *other_urls]
    size = profile.sockets_per_group
    for g in range(-(-count // size)):
        users = [f"s{g}x{i}" for i in range(min(size, count - g * size) + 1)]
        cid = await Api(chat, users[0]).create(GROUP, *users[1:], title=f"subscribers {g}")
        groups.append(Group(cid, users[0], users, []))
        devices.append(Device(users[0], "phone", [cid], urls, interval_s=profile.socket_interval_s))
        devices += [Device(u, "phone", [cid], urls, sends=False) for u in users[1:]]
    return groups, devices


def _devices(groups: Sequence[Group], gateways: Sequence[GatewayProcess]) -> list[Device]:
    """Each user's phone, and the owner's laptop; spread over the gateways in turn (a device
    that loses its socket moves on to the next gateway of its list)."""
    urls = [g.url for g in gateways]
    devices: list[Device] = []
    for group in groups:
        for user, device_id in [*((u, "phone") for u in group.members), (group.owner, "laptop")]:
            home = len(devices) % len(urls)
            cids = [group.conversation_id]
            devices.append(Device(user, device_id, cids, urls[home:] + urls[:home]))
    return devices


async def _wait_recovered(driver: LoadDriver, fault_at: float) -> float:
    try:
        async with asyncio.timeout(RECOVERY_GUARD_S):
            while not driver.acked_since(fault_at):
                driver.raise_failures()
                await asyncio.sleep(0.05)
    except TimeoutError:
        stuck = [d for d in driver.senders if not any(a.first_try_at >= fault_at for a in d.acks)]
        pytest.fail(
            f"not recovered after {RECOVERY_GUARD_S:.0f} s (a hang guard):"
            + "".join(f"\n  {d.name} on {d.url}: {d.errors[-3:]}" for d in stuck)
        )
    return (
        max(min(a.acked_at for a in d.acks if a.first_try_at >= fault_at) for d in driver.senders)
        - fault_at
    )


async def run_fault(
    cluster: Cluster,
    profile: Profile,
    name: str,
    fault: Fault,
    record: Callable[[Figures], None],
    extra: Mapping[str, float] | None = None,
    *,
    offline_per_group: int = 0,
    prepare: Prepare | None = None,
    check: ExtraCheck | None = None,
    subscribers: int = 0,
    subscriber_gateway: int = 0,
) -> Figures:
    """Drives the load, injects `fault`, checks the run against the store, records its figures
    (with `extra` ones the fault or `check` filled in). Each group has `offline_per_group`
    members more who never connect; `subscribers` idle devices more, in groups of their own,
    connect to gateway `subscriber_gateway` first."""
    reader_chat = cluster.chats[-1]
    groups = await _create_groups(reader_chat, profile, offline_per_group)
    devices = _devices(groups, cluster.gateways)
    if subscribers:
        urls = [g.url for g in cluster.gateways]
        home = urls.pop(subscriber_gateway)
        more_groups, more_devices = await _subscriber_groups(
            reader_chat, profile, subscribers, home, urls
        )
        groups += more_groups
        devices += more_devices
    driver = LoadDriver(devices, profile.interval_s)
    try:
        if prepare is not None:
            await prepare(groups, devices)
        await driver.connect_all()
        started = time.monotonic()
        driver.start()
        await asyncio.sleep(profile.warmup_s)
        driver.raise_failures()
        fault_at = time.monotonic()
        await fault()
        recover_s = await _wait_recovered(driver, fault_at)
        await asyncio.sleep(profile.after_s)
        await driver.stop()
        load_s = time.monotonic() - started
        store = {
            g.conversation_id: await read_conversation(reader_chat, g.owner, g.conversation_id)
            for g in groups
        }
        await driver.catch_up({cid: c.last_seq for cid, c in store.items()})
        more = await check(groups, store) if check is not None else []
        figures, problems = verify(name, driver, store, recover_s, load_s, extra or {})
        problems += more
        record(figures)
        assert not problems, "\n".join(problems[:30])
        assert figures.acked > 0
        return figures
    finally:
        await driver.cancel()
        await asyncio.gather(*(d.close() for d in devices))
