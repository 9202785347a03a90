"""One of `chatmesh dev`'s extra gateway processes (CHATMESH_DEV_GATEWAYS): gateway_ws as
`chatmesh serve gateway` runs it, on dev's WebSocket port (SO_REUSEPORT: the kernel spreads new
sockets over dev's gateway and these), calling chat and presence over gRPC on dev's port.

Dev starts it with a pipe on stdin and waits for its first stdout line (`gateway_ws on <url>`);
it stops when that pipe closes, so it does not outlive a dev that was killed.
"""

from __future__ import annotations

import sys

from chatmesh_common.runner import run_service
from gateway_ws.server import service_process

from .supervisor import stop_when_parent_is_gone

# The start of the line the gateway prints once it listens.
READY = "gateway_ws on"


def main() -> int:
    stop_when_parent_is_gone()
    return run_service("dev gateway", service_process)


if __name__ == "__main__":
    sys.exit(main())
