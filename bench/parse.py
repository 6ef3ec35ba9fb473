"""Benchmark of ``monitor.parse.parse`` on the seed ticker.

Builds the seed marquee (the five pairs of DESIGN.md, eight repeats, date line ``16 May 2025``)
inside a realistic ~200 KB HTML page (head styles and scripts, decoy tickers in script, style,
noscript, template and svg, a header with a nav menu, the marquee in ``<div class="ticker">``,
teasers of made-up prose, a footer with scripts), checks what ``parse`` reads from it, then times,
per call (median, p10-p90, minimum, each round's median):

* the seed page by the DOM route (a whole read, as a first check does), with a selector, as str;
* the fast path: the page with a changed rate, read from its remembered slice
  (``monitor.parse.reread``; and through ``Reader.read_again``, the daemon's path, which also
  tells the same body), and the same body again (nothing parsed);
* the plain-text seed, the text fixtures (``tests/fixtures``), and every markup form the tests
  know (``tests.pages.MARQUEE_FORMS``, on a 20 KB page);
* for reference, in the same run: the time selectolax (Lexbor) takes to build the whole DOM of
  the seed page, so that every figure also reads as a ratio on a shared, noisy machine.

Run it standalone: ``.venv/bin/python bench/parse.py [--rounds N] [--iterations N]``; ``make
bench`` runs it through ``bench/run.py``.
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

from monitor.errors import ParseError  # noqa: E402 -- after the sys.path line, for a checkout
from monitor.models import Snapshot  # noqa: E402 -- same
from monitor.parse import parse, reread  # noqa: E402 -- same
from monitor.parse.slice import Slice  # noqa: E402 -- same
from monitor.reader import Reader  # noqa: E402 -- same
from tests.pages import (  # noqa: E402 -- same
    MARQUEE_FORMS,
    SEED_DATE,
    SEED_QUOTES,
    ticker_html,
    ticker_text,
)

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


def fast_path_pages() -> tuple[str, bytes, Slice]:
    """The seed page (~200 KB), the same page with TMT/USD moved, and the slice the first
    taught: what the fast path reads (here and in ``bench/fastpath.py``)."""
    page = ticker_html(SEED_QUOTES, repeats=8, date_line=SEED_DATE, filler_kb=PAGE_KB)
    moved = list(SEED_QUOTES)
    moved[4] = ("TMT/USD", "0.28600", "-0.20")
    changed = ticker_html(moved, repeats=8, date_line=SEED_DATE, filler_kb=PAGE_KB).encode()
    hint = reread(page.encode("utf-8")).slice
    if hint is None or reread(changed, hint=hint).how != "slice":
        raise SystemExit("the seed page learned no slice: the fast path cannot be measured")
    return page, changed, hint


def cases() -> list[tuple[str, Callable[[], object]]]:
    """Every case timed: the seed page by each route, the text fixtures, every markup form."""
    page, changed, hint = fast_path_pages()
    page_bytes = page.encode("utf-8")
    seed_bytes = ticker_text(SEED_QUOTES, repeats=8, date_line=SEED_DATE).encode("utf-8")
    kb = len(page_bytes) // 1024
    checked: list[tuple[str, Callable[[], Snapshot]]] = [
        (f"seed {kb} KB, DOM route (whole read)", lambda: parse(page_bytes)),
        (f"seed {kb} KB, selector='.ticker'", lambda: parse(page_bytes, selector=".ticker")),
        (f"seed {kb} KB, as str", lambda: parse(page)),
        (
            f"seed {kb} KB, fast path (remembered slice)",
            lambda: reread(changed, hint=hint).result.snapshot,
        ),
        (f"plain-text seed {len(seed_bytes)} B", lambda: parse(seed_bytes)),
    ]
    for label, func in checked:
        if "fast path" not in label:
            check(func(), label)
    found: list[tuple[str, Callable[[], object]]] = list(checked)
    reader = Reader()
    memo = reader.read_again(page_bytes)[1]
    found.append(
        (
            f"seed {kb} KB, same body (its digest only)",
            lambda: reader.read_again(page_bytes, memo=memo),
        )
    )
    if reader.read_again(changed, memo=memo)[2] != "slice":
        raise SystemExit("Reader.read_again did not read the changed page from its slice")
    found.append(
        (
            f"seed {kb} KB, fast path, Reader.read_again",
            lambda: reader.read_again(changed, memo=memo),
        )
    )
    fixtures = sorted((ROOT / "tests" / "fixtures").glob("*.txt"))
    for path in fixtures:
        body = path.read_bytes()
        found.append((f"fixture {path.name}", lambda body=body: parse_or_none(body)))
    for form in MARQUEE_FORMS:
        body = ticker_html(SEED_QUOTES, date_line=SEED_DATE, filler_kb=20, form=form).encode()
        found.append((f"form {form} (20 KB page)", lambda body=body: parse(body)))
    return found


def parse_or_none(body: bytes) -> Snapshot | None:
    try:
        return parse(body)
    except ParseError:
        return None


def figures(samples: list[float], medians: list[float], reference: float) -> dict[str, object]:
    ordered = sorted(samples)
    deciles = statistics.quantiles(ordered, n=10)
    median = statistics.median(ordered)
    return {
        "median_ms": median,
        "p10_ms": deciles[0],
        "p90_ms": deciles[-1],
        "min_ms": ordered[0],
        "round_medians_ms": medians,
        "x_dom": median / reference,
    }


def run(rounds: int = 5, iterations: int = 100, warmup: int = 20) -> dict[str, object]:
    """Every case's figures, with the DOM build of the seed page (measured before and after the
    cases, so that a change of load shows in it as much as in them) as the reference."""
    page_bytes = ticker_html(
        SEED_QUOTES, repeats=8, date_line=SEED_DATE, filler_kb=PAGE_KB
    ).encode()

    def build_dom() -> object:
        return LexborHTMLParser(page_bytes)

    dom_samples, dom_medians = measure(build_dom, rounds, iterations, warmup)
    timed = [(label, *measure(func, rounds, iterations, warmup)) for label, func in cases()]
    samples, medians = measure(build_dom, rounds, iterations, warmup)
    dom_samples += samples
    dom_medians += medians
    reference = statistics.median(dom_samples)
    out: dict[str, object] = {
        label: figures(case_samples, case_medians, reference)
        for label, case_samples, case_medians in timed
    }
    out["reference: the DOM of the seed page"] = figures(dom_samples, dom_medians, reference)
    return out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--iterations", type=int, default=200)
    args.add_argument("--warmup", type=int, default=50)
    opts = args.parse_args()
    print(
        f"parse: {opts.rounds} rounds x {opts.iterations} iterations after {opts.warmup} warm-up "
        f"calls; ms per call (Python {sys.version.split()[0]})"
    )
    for label, got in run(opts.rounds, opts.iterations, opts.warmup).items():
        assert isinstance(got, dict)  # noqa: S101 -- figures() made it
        print(
            f"{label:<44} median {got['median_ms']:7.3f}  p10 {got['p10_ms']:7.3f}  "
            f"p90 {got['p90_ms']:7.3f}  = {got['x_dom']:5.2f} x DOM"
        )


if __name__ == "__main__":
    main()
