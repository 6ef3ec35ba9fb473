"""One thread that runs blocking calls for the event loop, one at a time, in the order given.

The SQLite store keeps its connection on one (``monitor.store.sqlite``): calls are serialized
without a lock, and the loop never waits on the disk. It is ``loop.run_in_executor`` on a
one-thread pool, without the pool: a call is a (loop, future, function) triple on a
``queue.SimpleQueue``; the thread runs it and hands the outcome to the loop with one
``call_soon_threadsafe``. That skips the pool's work item, its ``concurrent.futures.Future``
(a condition variable) and ``wrap_future``'s chaining: an empty call costs ~76 µs of CPU here
instead of ~101 µs (``bench/overheads.py``, ``docs/performance.md``), and every check makes one.

As with the pool, a call whose caller was cancelled before the thread reached it is not run, and
one the thread had started runs to its end (its outcome is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["CallThread", "Stopped"]

T = TypeVar("T")

_Item = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]
#: what ends the thread
_END: Final = None


class Stopped(RuntimeError):
    """The thread was stopped: it takes no more calls."""


class CallThread:
    """A thread of its own for blocking calls; ``await call(fn)`` runs ``fn()`` there."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # a daemon thread: a caller that never stops it does not hold the interpreter at exit
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    async def call(self, fn: Callable[[], T]) -> T:
        """``fn()``'s result (or exception), run on the thread after the calls before it."""
        if self._stopped:
            raise Stopped("the thread takes no more calls")
        return await self._submit(fn)

    async def stop(self, last: Callable[[], None] | None = None) -> None:
        """Take no more calls; run ``last`` after those already given, then end the thread
        (without waiting for it to exit)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if last is not None:
                await self._submit(last)
        finally:
            self._queue.put(_END)

    async def _submit(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn))
        return await future

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            self._one(*item)
            item = None  # no reference outlives its call

    @classmethod
    def _one(
        cls, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[[], Any]
    ) -> None:
        if future.cancelled():  # its caller gave up before it began
            return
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller, as a pool does
            cls._settle(loop, future, None, exc)
        else:
            cls._settle(loop, future, result, None)

    @staticmethod
    def _settle(
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        result: object,
        exc: BaseException | None,
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_set, future, result, exc)


def _set(future: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
