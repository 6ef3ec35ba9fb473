"""Where the parser's fast path spends its time: each part of ``monitor.parse.slice.read_slice``
on the seed ticker in a ~200 KB page with a changed rate, timed alone, next to Lexbor building
the same page's DOM (the reference of ``bench/parse.py``) in the same run.

``.venv/bin/python bench/fastpath.py [--calls N]``: medians (p10-p90) in µs of ``N`` calls each
(the collector off while timing). The parts call the slice module's private helpers as
``read_slice`` does; the sum of the parts is a little under the whole (the calls between them).
Not part of ``make bench``: it explains the fast path's figure there (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402 -- after the sys.path line

from bench.parse import fast_path_pages  # noqa: E402 -- same
from monitor.parse import reread  # noqa: E402 -- same
from monitor.parse import slice as sl  # noqa: E402 -- same
from monitor.parse.assemble import assemble  # noqa: E402 -- same


def timed(func: Callable[[], object], calls: int) -> tuple[float, float, float]:
    """Median, p10 and p90 of ``calls`` calls, in µs."""
    for _ in range(min(200, calls)):
        func()
    gc.collect()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        times = []
        for _ in range(calls):
            start = clock()
            func()
            times.append((clock() - start) / 1000)
    finally:
        gc.enable()
    deciles = statistics.quantiles(times, n=10)
    return statistics.median(times), deciles[0], deciles[-1]


def parts() -> list[tuple[str, Callable[[], object]]]:
    _, changed, memo = fast_path_pages()
    end = len(changed) - memo.tail
    view = memoryview(changed)
    span = changed[memo.start : end]
    cut = sl._cut(span, memo.lengths)  # the parts of read_slice, each timed alone
    if cut is None:
        raise SystemExit("the changed page does not fit its slice's template")
    constants, variables = cut

    entries = sl._entries(variables, memo.template)
    if entries is None:
        raise SystemExit("the changed page's variable pieces do not read")
    fp = sl.fingerprint
    return [
        ("reference: Lexbor builds the page's DOM", lambda: LexborHTMLParser(changed)),
        ("reread (the whole fast path)", lambda: reread(changed, hint=memo)),
        ("read_slice", lambda: sl.read_slice(changed, memo, memo.grammar)),
        (
            f"fingerprints before + after ({(len(changed) - len(span)) // 1024} KB)",
            lambda: (fp(view[: memo.start]), fp(view[end:])),
        ),
        (f"fingerprint of the slice ({len(span) // 1024} KB)", lambda: fp(view[memo.start : end])),
        (
            f"_cut ({len(variables)} variable pieces)",
            lambda: sl._cut(span, memo.lengths),
        ),
        ("the skeleton's fingerprint", lambda: fp(b"".join(constants))),
        ("decode and fill", lambda: sl._entries(variables, memo.template)),
        (
            f"assemble ({len(entries)} blocks, {len(set(entries))} distinct)",
            lambda: assemble(
                [(entry, True) for entry in entries],
                memo.grammar,
                truncated=True,
                known={},
                previous=memo.known,
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    dom = None
    print(f"fast path, parts (µs per call, median of {args.calls}; x DOM = over the reference)")
    for label, func in parts():
        median, p10, p90 = timed(func, args.calls)
        dom = dom or median
        print(
            f"  {label:<48} {median:8.1f}  p10 {p10:8.1f}  p90 {p90:8.1f}  {median / dom:5.3f} x DOM"
        )


if __name__ == "__main__":
    main()
