"""Who may open a socket on this gateway: browser origins, sockets per IP and per user, and IPs
that keep failing authentication. Pure code on an injected monotonic clock, shared by every
session of one gateway (the limits are per gateway process; a cluster multiplies them).

The handshake asks `refuse_handshake` (an HTTP answer before the upgrade: 403 for an origin off the
allow-list, 429 with Retry-After for an IP over its limits); an authenticated socket asks
`admit_user` (refused: an error frame and a close). Native apps send no Origin header, so the
allow-list only binds browsers, and a missing Origin is let through.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatmesh_common.ratelimit import RateLimiter

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class Admission:
    def __init__(
        self,
        *,
        allowed_origins: tuple[str, ...],
        max_sockets_per_ip: int,
        max_sockets_per_user: int,
        auth_failures_per_min: float,
        auth_failure_burst: int,
        monotonic: Callable[[], float],
    ) -> None:
        self._origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self._max_per_ip = max_sockets_per_ip
        self._max_per_user = max_sockets_per_user
        self._monotonic = monotonic
        self._failures = (
            RateLimiter(auth_failures_per_min / 60.0, auth_failure_burst, monotonic)
            if auth_failures_per_min > 0
            else None
        )
        self._blocked_until: dict[str, float] = {}
        self._per_ip: dict[str, int] = {}
        self._per_user: dict[str, int] = {}

    def refuse_handshake(self, ip: str, origin: str | None) -> Refusal | None:
        """Why a new socket from `ip` (with this Origin header) is refused, or None."""
        if self._origins and origin is not None and origin.rstrip("/").lower() not in self._origins:
            return Refusal(403, f"origin {origin} is not allowed")
        blocked = self._blocked_until.get(ip)
        if blocked is not None:
            wait = blocked - self._monotonic()
            if wait > 0:
                return Refusal(429, "too many failed authentications from this address", wait)
            del self._blocked_until[ip]
        if self._max_per_ip and self._per_ip.get(ip, 0) >= self._max_per_ip:
            return Refusal(429, f"at most {self._max_per_ip} sockets per address", 5.0)
        return None

    def opened(self, ip: str) -> None:
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1

    def closed(self, ip: str, user_id: str) -> None:
        _decrement(self._per_ip, ip)
        if user_id:
            _decrement(self._per_user, user_id)

    def auth_failed(self, ip: str) -> None:
        """A failed authentication from `ip`; past the allowance, the IP waits for new sockets."""
        if self._failures is None:
            return
        wait = self._failures.acquire(ip)
        if wait > 0:
            self._blocked_until[ip] = self._monotonic() + wait

    def admit_user(self, user_id: str) -> Refusal | None:
        """Counts an authenticated socket of `user_id`, or says why it is one too many."""
        if self._max_per_user and self._per_user.get(user_id, 0) >= self._max_per_user:
            return Refusal(429, f"at most {self._max_per_user} sockets per user", 5.0)
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        return None

    def sockets_of(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def trusted_networks(spec: str) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8,127.0.0.1`: the proxies whose X-Forwarded-For is believed."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
    )


def _trusted(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_address(
    peer: str,
    forwarded_for: str | None,
    networks: Sequence[IPNetwork],
) -> str:
    """The address the per-address limits count: the peer, or behind trusted proxies (Envoy)
    the nearest X-Forwarded-For hop that is not one of them. A client cannot pick its address
    by sending the header itself: only hops appended by trusted proxies are read."""
    if not networks or not forwarded_for or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
