"""Reading a Retry-After header (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date."""

from __future__ import annotations

import datetime
import email.utils

# A provider asking for more than a day is treated as asking for a day: the delivery loop's
# own give-up rules decide what happens after that.
MAX_RETRY_AFTER_S = 86400.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from `now` (epoch seconds), or None when absent or unreadable.

    Delay-seconds are ASCII digits only (not "²" or other Unicode digits). An HTTP-date in
    any of the three forms RFC 9110 asks recipients to accept counts from `now`; one in the
    past means "now" (0.0). Either is capped at MAX_RETRY_AFTER_S.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime form, or "-0000": HTTP-dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)
