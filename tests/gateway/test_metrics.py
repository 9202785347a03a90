"""The gateway's connection metrics: closes by the code that ended them, open sockets, online
users (tests/gateway: real sockets against a gateway in front of the test chat service)."""

from __future__ import annotations

from prometheus_client import REGISTRY
from websockets.frames import Close, CloseCode
from websockets.protocol import State
from websockets.server import ServerProtocol

from gateway_ws.metrics import close_code
from gateway_ws.server import Gateway
from tests.gateway.client import GatewayClient, eventually
from tests.gateway.conftest import token


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _closes(code: int) -> float:
    return _sample("chatmesh_ws_connections_total", {"code": str(code)})


def _closed(protocol: ServerProtocol, sent: int | None, received: int | None) -> ServerProtocol:
    """A connection that ended after the close frames given, the first one first."""
    if sent is not None:
        protocol.close_sent = Close(sent, "")
    if received is not None:
        protocol.close_rcvd = Close(received, "")
    if sent is not None and received is not None:
        protocol.close_rcvd_then_sent = False
    protocol.state = State.CLOSED
    return protocol


def test_a_close_is_labelled_with_the_code_of_the_side_that_started_it() -> None:
    """Sent first (1009, 4008), even unanswered: the code sent; received first: the code
    received; no close frame at all: 1006."""
    assert close_code(_closed(ServerProtocol(), 1009, None)) == 1009
    assert close_code(_closed(ServerProtocol(), 4008, 1000)) == 4008
    received_first = _closed(ServerProtocol(), None, 1000)
    received_first.close_sent = Close(1000, "")
    received_first.close_rcvd_then_sent = True
    assert close_code(received_first) == 1000
    assert close_code(_closed(ServerProtocol(), None, None)) == CloseCode.ABNORMAL_CLOSURE


async def test_an_oversize_frame_is_counted_as_1009(gateway: Gateway) -> None:
    """chatmesh_ws_connections_total{code="1009"}: websockets' own 1009 close, not 1006."""
    before_1009, before_1006 = _closes(1009), _closes(1006)
    client = await GatewayClient.connect(gateway.url, token("alice"))
    await client.send_raw("x" * (64 * 1024 + 1))
    assert (await client.closed())[0] == 1009
    await eventually(lambda: _closes(1009) == before_1009 + 1)
    assert _closes(1006) == before_1006


async def test_open_sockets_and_online_users_follow_connections(gateway: Gateway) -> None:
    """Two sockets of alice and one of bob: 3 open sockets, 2 online users; each close counts."""
    sockets, users = _sample("chatmesh_ws_open_sockets"), _sample("chatmesh_ws_online_users")

    def now() -> tuple[float, float]:
        return (
            _sample("chatmesh_ws_open_sockets") - sockets,
            _sample("chatmesh_ws_online_users") - users,
        )

    phone = await GatewayClient.connect(gateway.url, token("alice", "phone"))
    laptop = await GatewayClient.connect(gateway.url, token("alice", "laptop"))
    bob = await GatewayClient.connect(gateway.url, token("bob"))
    assert now() == (3, 2)
    unauthenticated = await GatewayClient.connect(gateway.url, auth="none")
    await eventually(lambda: now() == (4, 2))
    await phone.close()
    await eventually(lambda: now() == (3, 2))
    await laptop.close()
    await eventually(lambda: now() == (2, 1))
    await bob.close()
    await unauthenticated.close()
    await eventually(lambda: now() == (0, 0))
