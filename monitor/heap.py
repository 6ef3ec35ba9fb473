"""The daemon's memory: glibc's mmap threshold (:func:`fix_mmap_threshold`) and the pauses of
Python's cyclic garbage collector (:class:`CollectorPolicy`).

Both are settings of the process, not of a daemon: ``Daemon.run_forever`` applies them, the
one-shot commands leave the interpreter's defaults alone. ``docs/performance.md`` has the
measurements behind each.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("monitor.heap")

#: glibc's malloc serves blocks of this size and more by mmap, given back when freed
#: (:func:`fix_mmap_threshold`)
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h

#: how often :class:`CollectorPolicy` thaws everything and collects it all once (seconds)
THAW_EVERY = 3600.0


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Make glibc's malloc serve blocks of ``size`` bytes and more by mmap from now on; True if
    it did.

    glibc raises its mmap threshold to the largest mmapped block freed so far (up to 32 MiB), and
    the heap's trim threshold to twice that. At 5,000 targets the first ``/metrics`` scrape frees
    its 18 MB page, so the next one builds its page on the heap, and up to 36 MB of free heap stay
    resident after it (measured: malloc's arenas 76 MB, 54 MB of it free, RSS +40 MB;
    ``docs/performance.md``). Setting the threshold turns that adjustment off: big buffers go
    back to the system when freed; blocks under ``size`` (a 200 KB response body) stay on the
    heap, as before. Does nothing where the C library is not glibc, or when the environment
    sets glibc's own ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES``.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes  # noqa: PLC0415 -- only here, once

        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, size))
    except (ValueError, OSError, AttributeError):  # not glibc
        return False


class Collector(Protocol):
    """What :class:`CollectorPolicy` uses of the :mod:`gc` module (a fake in unit tests)."""

    def isenabled(self) -> bool: ...
    def collect(self) -> int: ...
    def freeze(self) -> None: ...
    def unfreeze(self) -> None: ...
    def get_freeze_count(self) -> int: ...


class CollectorPolicy:
    """Keeps the cyclic collector's full collections short in a long-running daemon.

    A full (generation 2) collection walks every object the collector tracks, with the event
    loop stopped. At 5,000 targets that is some 250,000 objects -- the targets' plans, jobs and
    readers, the last quotes -- and 75-117 ms, every 10-30 s (``docs/performance.md``). Almost
    all of them live as long as the daemon. So :meth:`tick` (the daemon's housekeeping, once a
    minute) freezes what has lived until now (:func:`gc.freeze`): a full collection then walks
    only what came since the last tick. Frozen objects are still freed when their last reference
    goes; what the collector alone would free (a cycle that became garbage after it was frozen)
    waits for the thaw: every ``thaw_every`` seconds -- and at the first tick -- everything is
    thawed, collected once and frozen again: one full pause an hour instead of hundreds.

    Does nothing while the collector is disabled (``gc.disable()``: the embedding program's
    choice). ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        thaw_every: float = THAW_EVERY,
        collector: Collector = gc,
    ) -> None:
        self._clock = clock
        self._thaw_every = thaw_every
        self._gc = collector
        self._thawed_at: float | None = None
        self._stopped = False

    def tick(self) -> None:
        """Freeze what lives now; thaw and collect everything first if a thaw is due."""
        if self._stopped or not self._gc.isenabled():
            return
        now = self._clock()
        if self._thawed_at is None or now - self._thawed_at >= self._thaw_every:
            self._thawed_at = now
            self._gc.unfreeze()
            started = time.perf_counter()
            collected = self._gc.collect()
            self._gc.freeze()
            log.info(
                "gc_thawed",
                collected=collected,
                frozen=self._gc.get_freeze_count(),
                seconds=round(time.perf_counter() - started, 4),
            )
        else:
            self._gc.freeze()

    def stop(self) -> None:
        """Thaw everything and freeze no more (the daemon stops: a housekeeping still running
        ticks in vain). What the daemon leaves behind is the collector's again."""
        self._stopped = True
        if self._thawed_at is not None:
            self._gc.unfreeze()
            self._thawed_at = None


__all__ = ["MMAP_THRESHOLD", "THAW_EVERY", "Collector", "CollectorPolicy", "fix_mmap_threshold"]
