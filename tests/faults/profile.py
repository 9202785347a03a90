"""How much load a fault run drives: a short CI profile (default) and a long one.

CHATMESH_FAULTS_PROFILE=long selects the long profile: more devices, a longer load and a longer
outage per fault. Both run the same checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    groups: int
    users_per_group: int  # the first user of each group has a second device
    interval_s: float  # each device sends one message, waits this long, sends the next
    warmup_s: float  # load before the fault
    outage_s: float  # how long a fault lasts where it has a length (down, paused, cut off)
    after_s: float  # load after every device recovered
    redis_outage_s: float  # how long Redis (presence) is down
    timeout_s: float  # pytest's hang guard for one fault test (cluster start-up included)
    sockets: int  # idle subscribers on one gateway in the many-sockets restart
    sockets_per_group: int  # they are spread over groups this big, each with one sender
    socket_interval_s: float  # that sender's pause between sends

    @property
    def devices(self) -> int:
        return self.groups * (self.users_per_group + 1)


PROFILES = {
    "ci": Profile("ci", groups=3, users_per_group=3, interval_s=0.25, warmup_s=1.5,
                  outage_s=2.0, after_s=1.5, redis_outage_s=6.0, timeout_s=150,
                  sockets=1000, sockets_per_group=100, socket_interval_s=1.0),
    "long": Profile("long", groups=6, users_per_group=4, interval_s=0.2, warmup_s=10.0,
                    outage_s=8.0, after_s=15.0, redis_outage_s=10.0, timeout_s=400,
                    sockets=3000, sockets_per_group=100, socket_interval_s=1.0),
}  # fmt: skip


def current_profile() -> Profile:
    name = os.environ.get("CHATMESH_FAULTS_PROFILE", "ci").strip().lower() or "ci"
    if name not in PROFILES:
        raise ValueError(f"CHATMESH_FAULTS_PROFILE={name!r}: use one of {sorted(PROFILES)}")
    return PROFILES[name]
