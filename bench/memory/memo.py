"""A target's memo (``Reader.read_again``) in memory: tracemalloc over 200 memos of the bench's
200 KB page (``bench.pipeline.page``), per memo, with its top lines.

    .venv/bin/python bench/memory/memo.py TREE [--learned] [--distinct]

After a slice read (default) or after the first, learning, whole read (``--learned``); with
``--distinct`` each page has other constant text in its ticker (no template shared). The results
(the snapshots, which the daemon's board holds too) are measured alone after the memos are gone.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

TREE = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(TREE))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent.parent))

from bench.pipeline import page  # noqa: E402 -- after sys.path
from monitor.reader import Memo, Reader  # noqa: E402 -- the tree's own

N = 200
LEARNED = "--learned" in sys.argv
DISTINCT = "--distinct" in sys.argv
FIRST, CHANGED = page(0).encode(), page(1).encode()
READER = Reader()


def word(n: int) -> bytes:
    return bytes(97 + (n // 26**k) % 26 for k in range(3))


def one(n: int) -> Memo:
    first, changed = FIRST, CHANGED
    if DISTINCT:  # another constant text in the ticker: no template shared
        mark = b"<small>%</small>"
        first = first.replace(mark, mark + b"<i>" + word(n) + b"</i>", 1)
        changed = changed.replace(mark, mark + b"<i>" + word(n) + b"</i>", 1)
    _, memo, how = READER.read_again(first, "text/html", None)
    if not LEARNED:
        _, memo, how = READER.read_again(changed, "text/html", memo)
    if how != ("whole" if LEARNED else "slice") or memo.slice is None:
        raise SystemExit(f"not read as expected: {how}")
    return memo


def main() -> None:
    one(N + 1)
    gc.collect()
    tracemalloc.start()
    memos = [one(n) for n in range(N)]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    snap = tracemalloc.take_snapshot()
    results = [memo.result for memo in memos]
    del memos
    gc.collect()
    alone = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    how = "after the learning whole read" if LEARNED else "after a slice read"
    print(
        f"{TREE} ({how}{', distinct templates' if DISTINCT else ''}): {held / N / 1024:.2f} KiB"
        f" per memo, of which the result {alone / N / 1024:.2f} KiB ({len(results)} kept)"
    )
    for stat in snap.statistics("lineno")[:12]:
        print(f"   {stat.size / N:8.0f} B/memo  {stat.count / N:6.1f} blocks  {stat.traceback}")


if __name__ == "__main__":
    main()
