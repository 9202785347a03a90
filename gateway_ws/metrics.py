"""The gateway's metrics: frames by type and outcome, closes by code, open sockets, online users.

The metric objects themselves are declared in chatmesh_common/metrics.py; this module keeps the
label children the hot path uses and the per-gateway bookkeeping behind the gauges.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from websockets.frames import CloseCode
from websockets.protocol import Protocol as WebSocketProtocol

from chatmesh_common.metrics import WS_CONNECTIONS, WS_FRAMES, WS_ONLINE_USERS, WS_OPEN_SOCKETS


def close_code(protocol: WebSocketProtocol) -> int:
    """The code that ended a connection: the side that started the closing handshake chose it.

    A close the gateway (or websockets, e.g. 1009 for an oversize message) sent first counts
    with the code sent, even when the peer never answered it; a close the peer started counts
    with the code received; no close frame at all is 1006.
    """
    received, sent = protocol.close_rcvd, protocol.close_sent
    if received is not None and (sent is None or protocol.close_rcvd_then_sent):
        return int(received.code)
    if sent is not None:
        return int(sent.code)
    return int(CloseCode.ABNORMAL_CLOSURE)


def close_reason(protocol: WebSocketProtocol) -> str:
    """The reason of the close frame that `close_code` counts ("" when there was none)."""
    received, sent = protocol.close_rcvd, protocol.close_sent
    if received is not None and (sent is None or protocol.close_rcvd_then_sent):
        return received.reason
    return sent.reason if sent is not None else ""


class FrameMetrics:
    """Cached children of the frame and connection counters (a labels() lookup takes a lock),
    and the gauges of open sockets and online users of one gateway."""

    def __init__(
        self,
        frames_total: Counter = WS_FRAMES,
        conns: Counter = WS_CONNECTIONS,
        open_sockets: Gauge = WS_OPEN_SOCKETS,
        online_users: Gauge = WS_ONLINE_USERS,
    ) -> None:
        self._frames_total = frames_total
        self._connections = conns
        self._open_sockets = open_sockets
        self._online_users = online_users
        self._children: dict[tuple[str, str], Counter] = {}
        # Authenticated sockets per user; a user is online while the count is positive.
        self._sockets_of: dict[str, int] = {}

    def frame(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._frames_total.labels(kind, outcome)
        child.inc()

    def socket_opened(self) -> None:
        self._open_sockets.inc()

    def socket_closed(self, code: int) -> None:
        self._open_sockets.dec()
        self._connections.labels(str(code)).inc()

    def user_online(self, user_id: str) -> None:
        count = self._sockets_of.get(user_id, 0)
        self._sockets_of[user_id] = count + 1
        if not count:
            self._online_users.inc()

    def user_offline(self, user_id: str) -> None:
        count = self._sockets_of.get(user_id, 0)
        if count > 1:
            self._sockets_of[user_id] = count - 1
        elif count == 1:
            del self._sockets_of[user_id]
            self._online_users.dec()

    @property
    def online_users(self) -> int:
        """Distinct users with an authenticated socket on this gateway."""
        return len(self._sockets_of)
