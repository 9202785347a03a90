"""The request id that follows one client request through the services' logs.

The gateway puts the `request_id` of a client frame on the gRPC calls it makes for it, as
metadata `x-request-id`; every server writes it in its access log line (and in the error line of
an unexpected failure), so one send can be followed from the socket to the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatmesh_common.limits import LIMITS

REQUEST_ID_KEY = "x-request-id"


def request_id_metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    """The metadata pair for a request id; none for an empty one or one gRPC cannot carry
    (metadata values are printable ASCII; a client may choose any string)."""
    if not request_id or not request_id.isascii() or not request_id.isprintable():
        return ()
    return ((REQUEST_ID_KEY, request_id[: LIMITS.max_request_id_chars]),)


def request_id_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The request id a call carries, cut to the protocol's length; "" when none."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            text = value if isinstance(value, str) else value.decode("ascii", "replace")
            return text[: LIMITS.max_request_id_chars]
    return ""
