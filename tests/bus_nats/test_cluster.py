"""chatmesh across processes: two chat_service replicas (one SQLite file) and two gateways on
one nats-server. Users on different gateways chat; every device gets every event once, in
order, after dropping duplicates by seq, also across a gateway restart and a NATS restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import pytest
from chatmesh.events.v1 import events_pb2

from chatmesh_common.bus.nats import NatsBus
from tests.gateway.client import GatewayClient
from tests.servers.nats import NatsServer

from .cluster import Api, token
from .conftest import Cluster
from .jetstream import wait_stored

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]

DIRECT, GROUP, CHANNEL = 1, 2, 3


class Device:
    """A device's socket and what it has seen, de-duplicated by (conversation, seq)."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self.seen: dict[str, list[int]] = {}
        self.out_of_order: list[tuple[str, int, int]] = []

    @classmethod
    async def connect(
        cls, url: str, user: str, device: str, resume: Mapping[str, int] | None = None
    ) -> Device:
        # A resume (even with no cursors) starts the event stream and waits for `resumed`.
        client = await GatewayClient.connect(url, token(user, device), resume=resume or {})
        return cls(client)

    async def reconnect(self, url: str, user: str, device: str, **more: int) -> None:
        """A new socket that resumes from what this device has seen (and from `more`)."""
        self.take()
        resume = self.cursors() | more
        self.client = await GatewayClient.connect(url, token(user, device), resume=resume)

    def take(self) -> None:
        for event in self.client.pending_events():
            self._record(event)

    def _record(self, event: events_pb2.ConversationEvent) -> None:
        if event.seq == 0:
            return
        seqs = self.seen.setdefault(event.conversation_id, [])
        last = seqs[-1] if seqs else 0
        if event.seq <= last:
            return  # a duplicate: the client drops it by seq
        if event.seq != last + 1:
            self.out_of_order.append((event.conversation_id, last, event.seq))
        seqs.append(event.seq)

    def cursors(self) -> dict[str, int]:
        return {cid: seqs[-1] for cid, seqs in self.seen.items() if seqs}

    async def wait_for(self, expected: Mapping[str, int], timeout_s: float = 15.0) -> None:
        """Until every conversation in `expected` reached its last seq; then checks order."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self.take()
                    if all(self.cursors().get(c, 0) >= last for c, last in expected.items()):
                        break
                    self._record(await self.client.next_event(timeout_s))
        except TimeoutError:
            pytest.fail(f"timed out: saw {self.cursors()}, expected {dict(expected)}")
        assert self.out_of_order == []
        for cid, last in expected.items():
            assert self.seen[cid] == list(range(1, last + 1))


async def _send_all(api: Api, conversation_id: str, count: int, tag: str) -> list[int]:
    return [await api.send(conversation_id, f"{tag}-{i}", f"{tag} {i}") for i in range(count)]


async def _gateway_send(device: Device, conversation_id: str, count: int, tag: str) -> None:
    for i in range(count):
        await device.client.call(
            "send_message", conversation_id=conversation_id, client_msg_id=f"{tag}-{i}", body=tag
        )


async def _close(devices: Iterable[Device]) -> None:
    for device in devices:
        await device.client.close()


async def test_users_on_two_gateways_get_every_event_once_in_order(cluster: Cluster) -> None:
    """Direct, group and a channel above the threshold: every device gets every event in order."""
    a, _b = cluster.chats
    g1, g2 = cluster.gateways
    direct = await Api(a, "alice").create(DIRECT, "bob")
    group = await Api(a, "alice").create(GROUP, "bob", "carol", title="g")
    channel = await Api(a, "alice").create(CHANNEL, "bob", "carol", "dave", "erin", title="c")
    devices = {
        "alice-phone": await Device.connect(g1.url, "alice", "phone"),
        "alice-laptop": await Device.connect(g2.url, "alice", "laptop"),
        "bob": await Device.connect(g2.url, "bob", "phone"),
        "carol": await Device.connect(g1.url, "carol", "phone"),
        "dave": await Device.connect(g2.url, "dave", "phone"),
        "erin": await Device.connect(g1.url, "erin", "phone"),
    }
    n = 15
    await asyncio.gather(
        _gateway_send(devices["alice-phone"], direct, n, "d-alice"),
        _gateway_send(devices["bob"], direct, n, "d-bob"),
        _gateway_send(devices["carol"], group, n, "g-carol"),
        _gateway_send(devices["bob"], group, n, "g-bob"),
        _gateway_send(devices["alice-phone"], channel, n, "c-phone"),
        _gateway_send(devices["alice-laptop"], channel, n, "c-laptop"),
    )
    everything = {direct: 2 * n, group: 2 * n, channel: 2 * n}
    expected = {
        "alice-phone": everything,
        "alice-laptop": everything,
        "bob": everything,
        "carol": {group: 2 * n, channel: 2 * n},
        "dave": {channel: 2 * n},
        "erin": {channel: 2 * n},
    }
    await asyncio.gather(*(devices[d].wait_for(expected[d]) for d in devices))
    for name in ("dave", "erin"):
        assert set(devices[name].seen) == {channel}
    await _close(devices.values())


async def test_apps_of_a_restarted_gateway_resume_with_no_gap(cluster: Cluster) -> None:
    """A gateway killed mid-stream: its apps reconnect to the restarted one and miss nothing."""
    a, b = cluster.chats
    _g1, g2 = cluster.gateways
    direct = await Api(a, "alice").create(DIRECT, "bob")
    group = await Api(a, "alice").create(GROUP, "bob", "carol")
    bob = await Device.connect(g2.url, "bob", "phone")
    alice = Api(a, "alice")
    carol = Api(b, "carol")
    await _send_all(alice, direct, 5, "before")
    await bob.wait_for({direct: 5})

    sending = asyncio.gather(
        _send_all(alice, direct, 40, "during"), _send_all(carol, group, 40, "during")
    )
    await asyncio.sleep(0.1)
    await g2.kill()
    await g2.start()
    await bob.reconnect(g2.url, "bob", "phone", **{group: 0})
    await sending
    await bob.wait_for({direct: 45, group: 40})
    await _close([bob])


async def test_nats_restart_loses_no_acknowledged_message(
    cluster: Cluster, nats_server: NatsServer, nats_bus: NatsBus
) -> None:
    """NATS restarted during a stream of sends: members that stayed connected get them all."""
    a, b = cluster.chats
    g1, g2 = cluster.gateways
    direct = await Api(a, "alice").create(DIRECT, "bob")
    group = await Api(a, "alice").create(GROUP, "bob", "carol")
    alice = await Device.connect(g1.url, "alice", "phone")
    bob = await Device.connect(g2.url, "bob", "phone")
    carol = await Device.connect(g1.url, "carol", "phone")

    async def send_slowly(api: Api, conversation_id: str, tag: str) -> list[int]:
        seqs = []
        for i in range(60):
            seqs.append(await api.send(conversation_id, f"{tag}-{i}", tag))
            await asyncio.sleep(0.01)
        return seqs

    sending = asyncio.gather(
        send_slowly(Api(a, "alice"), direct, "a"),
        send_slowly(Api(b, "bob"), direct, "b"),
        send_slowly(Api(b, "carol"), group, "c"),
    )
    await asyncio.sleep(0.3)
    await asyncio.to_thread(nats_server.restart)
    acked = await sending
    assert max(acked[0] + acked[1]) == 120 and max(acked[2]) == 60
    await asyncio.gather(
        alice.wait_for({direct: 120, group: 60}),
        bob.wait_for({direct: 120, group: 60}),
        carol.wait_for({group: 60}),
    )
    # And the durable stream has every one of them (the relay retried what failed).
    assert set(await wait_stored(nats_bus, direct, set(range(1, 121)))) == set(range(1, 121))
    assert set(await wait_stored(nats_bus, group, set(range(1, 61)))) == set(range(1, 61))
    await _close([alice, bob, carol])


async def test_a_socket_that_stops_reading_is_cut_off_without_slowing_others(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A stalled socket is closed as a slow consumer; a member on the same gateway keeps up."""
    from .cluster import GatewayProcess

    a, _b = cluster.chats
    g1 = GatewayProcess(
        "slow",
        a.target,
        tmp_path_factory.mktemp("slow"),
        CHATMESH_WS_OUTBOUND_QUEUE_MAX="32",
        CHATMESH_WS_SEND_STALL_TIMEOUT_S="2",
    )
    await g1.start()
    try:
        group = await Api(a, "alice").create(GROUP, "bob", "carol")
        stalled = await Device.connect(g1.url, "bob", "phone")
        carol = await Device.connect(g1.url, "carol", "phone")
        stalled.client.ws.transport.pause_reading()
        body = "x" * 15_000
        alice = Api(a, "alice")
        count = 600
        # A few sends in flight, not all 600: a flooded harness loop would read carol's socket
        # late, and under load the gateway would rightly cut her off too.
        in_flight = asyncio.Semaphore(8)

        async def send(i: int) -> None:
            async with in_flight:
                await alice.send(group, f"m-{i}", body)

        await asyncio.gather(
            *(send(i) for i in range(count)),
            carol.wait_for({group: count}, timeout_s=60),
        )
        stalled.client.ws.transport.resume_reading()
        code, _reason = await stalled.client.closed(timeout_s=15)
        assert code == 4008, f"stalled socket closed with {code}"
        await _close([carol])
    finally:
        await g1.stop()
