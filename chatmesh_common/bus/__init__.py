"""The bus between services: `base` (the protocols), `inprocess` (embedded), `nats` (cluster).

`from chatmesh_common.bus import Bus, InProcessBus` is the public way in. `NatsBus` lives in
`chatmesh_common.bus.nats`, imported only by a process that uses it (it needs nats-py); its
settings (`nats_settings`) import without it.
"""

from .base import (
    DEFAULT_ACK_WAIT_S,
    Bus,
    DurableConsumer,
    DurableMessage,
    Handler,
    Subscription,
)
from .durable_log import DURABLE_LOG_FILE
from .inprocess import InProcessBus
from .wildcards import matches

__all__ = [
    "DEFAULT_ACK_WAIT_S",
    "DURABLE_LOG_FILE",
    "Bus",
    "DurableConsumer",
    "DurableMessage",
    "Handler",
    "InProcessBus",
    "NatsSettings",
    "Subscription",
    "matches",
    "nats_settings_from_env",
]
