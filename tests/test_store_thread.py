"""monitor.store.thread.CallThread: the SQLite store's own thread (order, outcomes, cancellation,
stop)."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest

from monitor.store.thread import CallThread, Stopped


@pytest.fixture
async def worker() -> CallThread:
    thread = CallThread("test-calls")
    thread.start()
    return thread


async def test_calls_run_in_the_order_given_on_one_thread_of_their_own(worker: CallThread) -> None:
    seen: list[tuple[int, int]] = []

    def call(n: int) -> int:
        seen.append((n, threading.get_ident()))
        return n * 2

    results = await asyncio.gather(*(worker.call(functools.partial(call, n)) for n in range(50)))
    await worker.stop()
    assert results == [n * 2 for n in range(50)]
    assert [n for n, _ in seen] == list(range(50))
    idents = {ident for _, ident in seen}
    assert len(idents) == 1
    assert idents != {threading.get_ident()}


async def test_an_exception_reaches_its_caller_and_the_thread_goes_on(worker: CallThread) -> None:
    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await worker.call(fails)
    assert await worker.call(lambda: "still here") == "still here"
    await worker.stop()


async def test_a_call_cancelled_before_it_began_is_not_run(worker: CallThread) -> None:
    release, began = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking() -> None:
        began.set()
        release.wait(timeout=10)
        ran.append("first")

    first = asyncio.create_task(worker.call(blocking))
    await asyncio.to_thread(began.wait, 10)
    second = asyncio.create_task(worker.call(lambda: ran.append("second")))
    await asyncio.sleep(0)  # the second call is queued behind the first
    second.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await worker.stop()
    assert ran == ["first"]


async def test_a_call_whose_caller_left_runs_to_its_end(worker: CallThread) -> None:
    release, began, done = threading.Event(), threading.Event(), threading.Event()

    def blocking() -> None:
        began.set()
        release.wait(timeout=10)
        done.set()

    task = asyncio.create_task(worker.call(blocking))
    await asyncio.to_thread(began.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await worker.call(done.is_set) is True
    await worker.stop()


async def test_stop_runs_last_after_the_calls_given_then_refuses_more(worker: CallThread) -> None:
    order: list[str] = []
    pending = [
        asyncio.create_task(worker.call(functools.partial(order.append, f"call {n}")))
        for n in (1, 2)
    ]
    await asyncio.sleep(0)  # both queued
    await worker.stop(last=lambda: order.append("last"))
    await asyncio.gather(*pending)
    assert order == ["call 1", "call 2", "last"]
    with pytest.raises(Stopped):
        await worker.call(lambda: None)
    await worker.stop()  # a second stop does nothing
