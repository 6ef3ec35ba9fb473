"""End-to-end cost of one check: fetch → parse → detect → route → commit, in the daemon's process.

A page server runs in a separate process (``python -m tests.servers``) so its CPU is not counted.
``TARGETS`` targets point at it (distinct URLs, one host); each round checks all of them concurrently
through the daemon's own ``Checker``. Reported per check, over ``ROUNDS`` rounds: the process's CPU
time (event loop + SQLite thread) and the event loop thread's own CPU time, as median and p10–p90.

Scenarios:
  full       a ~200 KB HTML page, no validators: every check downloads and parses it
  not-mod    the same page with ETag/Last-Modified: every check after the first is a 304
  change     like ``full``, and the ticker changes every round: events, outbox rows, deliveries

Run: ``.venv/bin/python bench/pipeline.py`` (``make bench`` runs it).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import settings_for, start_server  # noqa: E402 -- same
from monitor.app import build_app  # noqa: E402 -- same
from monitor.daemon import Daemon  # noqa: E402 -- after the sys.path line, for a plain checkout
from monitor.logs import configure_logging  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- same

TARGETS = int(os.environ.get("BENCH_TARGETS", "40"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))


def write_page(path: Path, n: int) -> None:
    quotes = [(p, r, c) for p, r, c in SEED_QUOTES]
    pair, rate, _ = quotes[4]
    quotes[4] = (pair, rate, f"-0.{n + 10}")  # a new TMT/USD change % every round
    path.write_text(ticker_html(quotes, date_line=SEED_DATE, filler_kb=200), encoding="utf-8")


async def measure(
    scenario: str, workdir: Path, page: Path
) -> tuple[list[float], list[float], list[float]]:
    write_page(page, 0)
    proc, url = start_server(page, validators=scenario == "not-mod")
    try:
        daemon = Daemon(await build_app(settings_for(url, workdir, TARGETS)))
        await daemon.store.open()
        plans = daemon.plans
        await asyncio.gather(*(daemon.checker.check(p) for p in plans))  # baseline, warm-up
        await daemon.deliverer.deliver_due()
        cpu, loop_cpu, wall = [], [], []
        for n in range(1, ROUNDS + 1):
            if scenario == "change":
                write_page(page, n)
            p0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
            results = await asyncio.gather(*(daemon.checker.check(p) for p in plans))
            if scenario == "change":
                await daemon.deliverer.deliver_due()
            p1, t1, w1 = time.process_time(), time.thread_time(), time.perf_counter()
            bad = [r for r in results if r.outcome not in ("observed", "not_modified")]
            assert not bad, bad  # noqa: S101 -- a benchmark of failures measures nothing
            cpu.append((p1 - p0) / len(plans) * 1000)
            loop_cpu.append((t1 - t0) / len(plans) * 1000)
            wall.append((w1 - w0) * 1000)
        await daemon.store.aclose()
        await daemon.fetcher.aclose()
        return cpu, loop_cpu, wall
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    return f"median {statistics.median(values):6.2f}  p10 {q[0]:6.2f}  p90 {q[-1]:6.2f}"


def main() -> None:
    # as in production: info-level JSON logs (written to /dev/null here); BENCH_LOG_LEVEL=warning
    # shows what the logs cost
    with Path(os.devnull).open("w", encoding="utf-8") as sink:
        level = os.environ.get("BENCH_LOG_LEVEL", "info")
        configure_logging(level=level, fmt="json", stream=sink)
        asyncio.run(_main())


async def _main() -> None:
    print(f"pipeline: {TARGETS} targets, {ROUNDS} rounds, ~200 KB page, per check (ms)")
    for scenario in ("full", "not-mod", "change"):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            cpu, loop_cpu, wall = await measure(scenario, workdir, workdir / "page.html")
        print(f"  {scenario:<8} process CPU  {spread(cpu)}")
        print(f"  {'':<8} loop CPU     {spread(loop_cpu)}")
        print(f"  {'':<8} round wall   {spread(wall)}  ({TARGETS} checks concurrently)")


if __name__ == "__main__":
    main()
