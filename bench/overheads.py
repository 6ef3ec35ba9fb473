"""The fixed costs around a check, each next to what it replaced, in one process and one run.

``.venv/bin/python bench/overheads.py [--calls N] [--rounds R]``: CPU µs per call (the process's
``time.process_time``, so the store thread's share counts too), median and spread of R rounds of
N calls, the two sides of each pair alternating round by round:

* ``fetch``: ``Fetcher.fetch`` of the pipeline's ~200 KB page from the page server in another
  process (``python -m tests.servers``), through the daemon's ``CookielessClient`` and through an
  ``httpx.AsyncClient`` with the cookie jar that refuses every cookie (what ``monitor.fetch`` had);
* ``hop``: an empty call to a thread of its own, through ``monitor.store.thread.CallThread`` and
  through ``loop.run_in_executor`` on a one-thread pool (what ``monitor.store.sqlite`` had);
* ``start``: a check's start on a real SQLite file, ``begin_check(load=True)`` against
  ``begin_check`` then ``load_for_check`` (what the daemon did).

Not part of ``make bench``: it explains what the pipeline's CPU per check is made of
(``docs/performance.md``), where the differences are within the noise of a whole daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402 -- after the sys.path line

from bench.harness import start_server, write_atomically  # noqa: E402 -- same
from bench.pipeline import page  # noqa: E402 -- same
from monitor.fetch import Fetcher, FetchPolicy  # noqa: E402 -- same
from monitor.logs import configure_logging  # noqa: E402 -- same
from monitor.store.sqlite import SqliteStore  # noqa: E402 -- same
from monitor.store.thread import CallThread  # noqa: E402 -- same
from monitor.transport import LIMITS, aiohttp_transport  # noqa: E402 -- same

Call = Callable[[], Awaitable[object]]
Side = Callable[[], AbstractAsyncContextManager[Call]]


async def cpu_us(call: Call, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls * 1e6


async def pair(label: str, now: Side, before: Side, *, calls: int, rounds: int) -> None:
    """Each side set up afresh for each round (its thread alone in the process while timed),
    warmed, timed over ``calls``, torn down; the sides alternate which goes first."""
    got: dict[str, list[float]] = {"now": [], "before": []}
    for n in range(rounds):
        sides = (("now", now), ("before", before))
        for side, made in sides if n % 2 == 0 else sides[::-1]:
            async with made() as call:
                for _ in range(min(50, calls)):  # warm: connections, caches
                    await call()
                got[side].append(await cpu_us(call, calls))
    a, b = statistics.median(got["now"]), statistics.median(got["before"])
    spread = {k: f"{min(v):.0f}-{max(v):.0f}" for k, v in got.items()}
    print(
        f"  {label:<8} now {a:7.1f} µs ({spread['now']})  before {b:7.1f} µs ({spread['before']})"
        f"  now/before {a / b:.2f}",
        flush=True,
    )


async def fetches(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-overheads-") as tmp:
        page_file = Path(tmp) / "page.html"
        write_atomically(page_file, page(0))
        server, url = start_server(page_file, validators=False)
        policy = FetchPolicy()

        @asynccontextmanager
        async def cookieless() -> AsyncIterator[Call]:
            async with Fetcher(user_agent="bench") as fetcher:
                yield lambda: fetcher.fetch(url, policy=policy)

        @asynccontextmanager
        async def refusing_jar() -> AsyncIterator[Call]:
            jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
            async with httpx.AsyncClient(
                transport=aiohttp_transport(),
                follow_redirects=False,
                trust_env=True,
                limits=LIMITS,
                headers={"User-Agent": "bench"},
                cookies=jar,
            ) as client:
                fetcher = Fetcher(user_agent="bench", client=client)
                yield lambda: fetcher.fetch(url, policy=policy)

        try:
            await pair("fetch", cookieless, refusing_jar, calls=calls, rounds=rounds)
        finally:
            server.terminate()
            server.wait(timeout=10)


async def hops(calls: int, rounds: int) -> None:
    @asynccontextmanager
    async def own_thread() -> AsyncIterator[Call]:
        thread = CallThread("bench-calls")
        thread.start()
        try:
            yield lambda: thread.call(lambda: None)
        finally:
            await thread.stop()

    @asynccontextmanager
    async def pool() -> AsyncIterator[Call]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as executor:
            yield lambda: loop.run_in_executor(executor, lambda: None)

    await pair("hop", own_thread, pool, calls=calls, rounds=rounds)


async def starts(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-overheads-") as tmp:
        path = Path(tmp) / "state.db"

        @asynccontextmanager
        async def opened() -> AsyncIterator[SqliteStore]:
            store = SqliteStore(path)
            await store.open()
            try:
                yield store
            finally:
                await store.aclose()

        @asynccontextmanager
        async def together() -> AsyncIterator[Call]:
            async with opened() as store:
                yield lambda: store.begin_check(
                    "t", owner="bench", lease=10, spacing=0, now=datetime.now(UTC), load=True
                )

        @asynccontextmanager
        async def apart() -> AsyncIterator[Call]:
            async with opened() as store:

                async def call() -> object:
                    now = datetime.now(UTC)
                    await store.begin_check("t", owner="bench", lease=10, spacing=0, now=now)
                    return await store.load_for_check("t", now=now)

                yield call

        await pair("start", together, apart, calls=calls, rounds=rounds)


async def main(calls: int, rounds: int) -> None:
    configure_logging(level="warning", fmt="json")
    print(f"CPU µs per call, median (min-max) of {rounds} rounds of {calls} calls")
    await fetches(calls, rounds)
    await hops(calls, rounds)
    await starts(calls, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
