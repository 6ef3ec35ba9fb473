"""How long to wait before trying again: full-jitter exponential backoff, and a server's
``Retry-After``. The fetcher (retries inside one check) and the delivery worker (retries stored in
the outbox) both wait by these two functions.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRY_AFTER_MAX", "full_jitter", "parse_retry_after"]

#: the longest wait a ``Retry-After`` can impose (an absurd one is cut to this)
RETRY_AFTER_MAX = 3600.0


def full_jitter(attempt: int, *, initial: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after the ``attempt``-th failure (1 for the first): uniform in
    ``[0, min(cap, initial * 2**(attempt - 1))]`` ("full jitter", AWS's name for it)."""
    exponent = min(max(attempt - 1, 0), 62)
    ceiling = min(cap, initial * 2.0**exponent)
    return rng.uniform(0.0, max(ceiling, 0.0))


def parse_retry_after(
    value: str | None, *, now: datetime | None = None, limit: float = RETRY_AFTER_MAX
) -> float | None:
    """A ``Retry-After`` header as seconds to wait, at most ``limit``.

    Delta-seconds (``120``; a fraction such as ``1.5`` is read too) or an HTTP date (a past one
    means 0). ``None`` when absent or unreadable: negative, not a number, not a date.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, limit)
