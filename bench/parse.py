"""Benchmark of ``monitor.parse.parse`` on the seed ticker.

Builds the seed marquee (the five pairs of DESIGN.md, eight repeats, date line ``16 May 2025``)
inside a realistic ~200 KB HTML page (head styles and scripts, decoy tickers in script, style,
noscript, template and svg, a header with a nav menu, the marquee in ``<div class="ticker">``,
teasers of made-up prose, a footer with scripts), checks what ``parse`` reads from it, then times
``parse`` and prints the median, the p10-p90 spread and the minimum per call, in milliseconds:

* the HTML page as bytes (what the daemon hands over), without a selector;
* the same with ``selector=".ticker"``;
* the same page as ``str``;
* the plain-text seed (the text rendering of the marquee and date line);
* for reference, in the same run: the time selectolax (Lexbor) takes to build the whole DOM of
  that page (``LexborHTMLParser(page_bytes)``), so that the figures above read as ratios on a
  shared, noisy machine (``parse / DOM``).

Run it standalone: ``.venv/bin/python bench/parse.py [--rounds N] [--iterations N]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402 -- after the sys.path line

from monitor.models import Snapshot  # noqa: E402 -- after the sys.path line, for a plain checkout
from monitor.parse import parse  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html, ticker_text  # noqa: E402 -- same

PAGE_KB = 200


def expected() -> list[tuple[str, Decimal, Decimal | None]]:
    return [
        (pair, Decimal(rate), None if change is None else Decimal(change.replace("−", "-")))
        for pair, rate, change in SEED_QUOTES
    ]


def check(snapshot: Snapshot, label: str) -> None:
    """Fail loudly unless ``snapshot`` is exactly the seed ticker."""
    got = [(q.pair, q.rate, q.change_pct) for q in snapshot.quotes]
    strings = [(str(q.rate), str(q.change_pct)) for q in snapshot.quotes]
    want_strings = [(rate, str(Decimal(change or "0"))) for _, rate, change in SEED_QUOTES]
    if (
        got != expected()
        or strings != want_strings
        or snapshot.page_date != date(2025, 5, 16)
        or snapshot.conflicts
    ):
        raise SystemExit(f"{label}: parse read {snapshot!r}, not the seed ticker")


def measure(
    func: Callable[[], object], rounds: int, iterations: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Per-call times (ms) of every iteration, and the median of each round."""
    for _ in range(warmup):
        func()
    samples: list[float] = []
    medians: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        gc.collect()
        times = []
        for _ in range(iterations):
            start = clock()
            func()
            times.append((clock() - start) / 1e6)
        samples.extend(times)
        medians.append(statistics.median(times))
    return samples, medians


def report(
    label: str, samples: list[float], medians: list[float], reference: float | None = None
) -> None:
    """One line of figures; with ``reference`` (the DOM build's median), the ratio to it."""
    ordered = sorted(samples)
    deciles = statistics.quantiles(ordered, n=10)
    median = statistics.median(ordered)
    ratio = "" if reference is None else f"  = {median / reference:4.2f} x DOM"
    print(
        f"{label:<36} median {median:6.3f}  "
        f"p10 {deciles[0]:6.3f}  p90 {deciles[-1]:6.3f}  min {ordered[0]:6.3f}{ratio}  "
        f"round medians {' '.join(f'{m:.3f}' for m in medians)}"
    )


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--iterations", type=int, default=200)
    args.add_argument("--warmup", type=int, default=50)
    opts = args.parse_args()

    page = ticker_html(SEED_QUOTES, repeats=8, date_line=SEED_DATE, filler_kb=PAGE_KB)
    page_bytes = page.encode("utf-8")
    seed_text = ticker_text(SEED_QUOTES, repeats=8, date_line=SEED_DATE)
    seed_bytes = seed_text.encode("utf-8")

    cases: list[tuple[str, Callable[[], Snapshot]]] = [
        (f"html {len(page_bytes) // 1024} KB bytes", lambda: parse(page_bytes)),
        ("html bytes, selector='.ticker'", lambda: parse(page_bytes, selector=".ticker")),
        ("html str", lambda: parse(page)),
        (f"plain-text seed {len(seed_bytes)} B bytes", lambda: parse(seed_bytes)),
    ]
    for label, func in cases:
        check(func(), label)
    dom_label = f"reference: DOM of the {len(page_bytes) // 1024} KB page"

    def build_dom() -> object:
        return LexborHTMLParser(page_bytes)

    print(
        f"parse(): {opts.rounds} rounds x {opts.iterations} iterations after "
        f"{opts.warmup} warm-up calls; times per call in ms (Python {sys.version.split()[0]})"
    )
    # the reference is measured before and after the cases, so that a change of load on the
    # machine shows in it as much as in them
    dom_samples, dom_medians = measure(build_dom, opts.rounds, opts.iterations, opts.warmup)
    timed = [
        (label, *measure(func, opts.rounds, opts.iterations, opts.warmup)) for label, func in cases
    ]
    samples, medians = measure(build_dom, opts.rounds, opts.iterations, opts.warmup)
    dom_samples += samples
    dom_medians += medians
    reference = statistics.median(dom_samples)
    for label, case_samples, case_medians in timed:
        report(label, case_samples, case_medians, reference)
    report(dom_label, dom_samples, dom_medians)


if __name__ == "__main__":
    main()
