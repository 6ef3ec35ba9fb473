"""The status page's store reads at many targets: its build time, and the SQL behind its sparklines.

``build_view`` (the picture behind ``/``, ``/api/status`` and ``ticker-monitor status``) reads each
target's newest :data:`monitor.status.SPARK_OBSERVATIONS` observations of the last 7 days. Three
modes, each on a SQLite state file filled here (cached under ``var/``, filled again when missing):

* ``page [TARGETS ROWS]``: ``build_view`` in this process, ``ROUNDS`` times on a file of TARGETS
  targets x ROWS observations (5,000 x 200); prints JSON (wall ms of each round);
* ``compare OTHER_TREE [TARGETS ROWS]``: ``page`` of this tree and of OTHER_TREE (e.g. the tree
  before a change, from ``git archive``), alternately in new processes on the same file, and the
  ratio of their medians;
* ``sparklines [TARGETS ROWS]``: the sparklines' reads alone, three ways, interleaved in this
  process: ``history`` per target, one ``latest_history`` of all, ``BATCH`` targets a call;
* ``sql``: the two ways SQLite can read every target's newest rows -- one statement with
  ``ROW_NUMBER() OVER (PARTITION BY target ORDER BY observed_at DESC)``, or one ``ORDER BY
  observed_at DESC LIMIT`` walk per target on one connection (what ``latest_history`` does) --
  interleaved, at 100 and 5,000 targets x 1,000 rows (statement and ``fetchall`` only: the
  decoding is the same for both).

Run: ``.venv/bin/python bench/status_page.py compare /tmp/before`` (docs/performance.md).
Not part of ``make bench``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

#: the tree whose ``monitor`` is measured (``compare`` runs this file on the other tree)
ROOT = Path(os.environ.get("BENCH_PAGE_TREE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from monitor.logs import configure_logging  # noqa: E402 -- sys.path
from monitor.models import Quote, Snapshot, TargetState, Validators  # noqa: E402 -- sys.path
from monitor.settings import TargetConfig  # noqa: E402 -- same
from monitor.status import SPARK_OBSERVATIONS, SPARK_WINDOW, Board, build_view, seed_board  # noqa: E402
from monitor.store import CheckCommit  # noqa: E402 -- same
from monitor.store.codec import dumps  # noqa: E402 -- same
from monitor.store.sqlite import SqliteStore, _ts  # noqa: E402 -- same

#: ``sparklines``: targets a ``latest_history`` call in its third way
BATCH = 100
ROUNDS = int(os.environ.get("BENCH_PAGE_ROUNDS", "5"))
CACHE = Path(os.environ.get("BENCH_PAGE_DIR", str(ROOT / "var")))
PAIRS = ("TMT/USD", "TMT/EUR", "TMT/RUB", "TMT/CNY", "TMT/TRY")
#: the instant every file's rows end at (fixed, so a cached file reads the same on any day)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: the rows of a target lie within this span before NOW (inside the page's 7-day window)
SPAN = SPARK_WINDOW - timedelta(hours=1)

WINDOWED = (
    "SELECT target, observed_at, snapshot_json FROM ("
    " SELECT target, observed_at, snapshot_json, id, ROW_NUMBER() OVER"
    " (PARTITION BY target ORDER BY observed_at DESC, id DESC) AS n"
    " FROM observations WHERE target IN ({marks}) AND observed_at >= ?"
    ") WHERE n <= ? ORDER BY target, observed_at, id"
)
PER_TARGET = (
    "SELECT observed_at, snapshot_json FROM observations WHERE target = ? AND observed_at >= ?"
    " ORDER BY observed_at DESC, id DESC LIMIT ?"
)


def names(targets: int) -> list[str]:
    return [f"t{i:05d}" for i in range(targets)]


def snapshot(step: int) -> Snapshot:
    """Five pairs; one of them moves at each step (an observation is a change of the page)."""
    quotes = tuple(
        Quote(
            pair,
            *pair.split("/"),
            rate=Decimal("0.28575") + Decimal(step if i == step % len(PAIRS) else 0) / 100000,
            change_pct=Decimal("-0.14"),
        )
        for i, pair in enumerate(PAIRS)
    )
    return Snapshot(quotes=quotes)


def state_file(targets: int, rows: int) -> Path:
    """A state file of ``targets`` targets x ``rows`` observations each (filled once, cached)."""
    path = CACHE / f"bench-status-{targets}x{rows}.db"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)

    async def create() -> None:  # the schema and one commit per target, through the store
        store = SqliteStore(partial)
        await store.open()
        try:
            state = TargetState(snapshot=snapshot(0), last_success_at=NOW)
            batch = [
                CheckCommit(name, state, Validators(), snapshot(0), NOW - SPAN)
                for name in names(targets)
            ]
            for start in range(0, len(batch), 500):
                await store.commit_checks(batch[start : start + 500])
        finally:
            await store.aclose()

    asyncio.run(create())
    every = SPAN / max(rows, 1)
    with contextlib.closing(sqlite3.connect(partial)) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        for name in names(targets):
            conn.executemany(
                "INSERT INTO observations (target, observed_at, snapshot_json) VALUES (?, ?, ?)",
                (
                    (name, _ts(NOW - SPAN + every * step), dumps(snapshot(step).to_json()))
                    for step in range(1, rows)
                ),
            )
            conn.commit()
        conn.execute("PRAGMA journal_mode = DELETE")  # one file, to rename
    partial.rename(path)
    return path


def page(targets: int, rows: int) -> dict[str, Any]:
    """``build_view``'s wall ms on the file, ``ROUNDS`` times in this process."""
    path = state_file(targets, rows)
    configs = [TargetConfig(name=n, url=f"https://example.com/{n}") for n in names(targets)]

    async def timed() -> dict[str, Any]:
        store = SqliteStore(path)
        await store.open()
        try:
            board = Board(configs, started_at=NOW)
            await seed_board(board, store)  # the pairs each target shows
            times, pairs = [], 0
            for _ in range(ROUNDS):
                began = time.perf_counter()
                view = await build_view(
                    board, store, now=NOW, active=lambda _t, _at: True, live=False, deadline=600
                )
                times.append((time.perf_counter() - began) * 1000)
                if not view.store_ok:
                    raise RuntimeError(view.store_error)
                pairs = sum(len(p.history) for t in view.targets for p in t.pairs)
            return {"ms": times, "median_ms": statistics.median(times), "changes": pairs}
        finally:
            await store.aclose()

    return asyncio.run(timed())


def compare(other: Path, targets: int, rows: int) -> dict[str, Any]:
    """``page`` of this tree and of ``other``, alternately in new processes, on one file."""
    state_file(targets, rows)  # filled once, before any timing
    trees = {"this": ROOT, "other": other.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    for _ in range(3):
        for label, tree in trees.items():
            env = {
                **os.environ,
                "PYTHONPATH": str(tree),
                "BENCH_PAGE_TREE": str(tree),
                "BENCH_PAGE_DIR": str(CACHE),
            }
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "page", str(targets), str(rows)],
                check=True, capture_output=True, text=True, env=env, cwd=tree, timeout=3600,
            ).stdout  # fmt: skip
            runs[label].append(json.loads(out))
    med = {k: statistics.median(t for r in v for t in r["ms"]) for k, v in runs.items()}
    return {
        "targets": targets,
        "rows": rows,
        "this_ms": [round(t, 1) for r in runs["this"] for t in r["ms"]],
        "other_ms": [round(t, 1) for r in runs["other"] for t in r["ms"]],
        "this_median_ms": med["this"],
        "other_median_ms": med["other"],
        "this_over_other": med["this"] / med["other"],
        "changes": {k: v[-1]["changes"] for k, v in runs.items()},
    }


def sparklines(targets: int, rows: int) -> dict[str, Any]:
    """The sparklines' reads three ways, interleaved in this process, decoding and ``changes``
    included and kept, as ``build_view`` does them: ``history`` per target (what ``build_view``
    does), one ``latest_history`` of every target, and ``latest_history`` of ``BATCH`` targets a
    call."""
    from monitor.history import Change, changes  # noqa: PLC0415 -- only this mode

    path = state_file(targets, rows)
    wanted, since = names(targets), NOW - SPARK_WINDOW

    async def timed() -> dict[str, Any]:
        store = SqliteStore(path)
        await store.open()

        async def per_target() -> int:
            kept: dict[str, list[Change]] = {}
            for name in wanted:
                obs = await store.history(target=name, since=since, latest=SPARK_OBSERVATIONS)
                for change in changes(obs):
                    kept.setdefault(change.target, []).append(change)
            return sum(map(len, kept.values()))

        async def batched(size: int) -> int:
            kept: dict[str, list[Change]] = {}
            for start in range(0, len(wanted), size):
                newest = await store.latest_history(
                    wanted[start : start + size], since=since, latest=SPARK_OBSERVATIONS
                )
                for obs in newest.values():
                    for change in changes(obs):
                        kept.setdefault(change.target, []).append(change)
            return sum(map(len, kept.values()))

        ways = {
            "history_per_target": per_target,
            "latest_history_one_call": lambda: batched(len(wanted)),
            f"latest_history_{BATCH}_a_call": lambda: batched(BATCH),
        }
        times: dict[str, list[float]] = {k: [] for k in ways}
        found: dict[str, int] = {}
        try:
            for _ in range(ROUNDS):
                for label, way in ways.items():
                    began = time.perf_counter()
                    found[label] = await way()
                    times[label].append((time.perf_counter() - began) * 1000)
        finally:
            await store.aclose()
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["history_per_target"]
        return {
            "targets": targets,
            "rows": rows,
            "ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
            "median_ms": med,
            "over_history_per_target": {k: v / base for k, v in med.items()},
            "changes": found,
        }

    return asyncio.run(timed())


def sql(rows: int = 1000) -> dict[str, Any]:
    """The window statement and the per-target walks, interleaved, at 100 and 5,000 targets."""
    out: dict[str, Any] = {}
    since = _ts(NOW - SPARK_WINDOW)
    for targets in (100, 5000):
        path = state_file(targets, rows)
        wanted = names(targets)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for name in wanted:  # warm the page cache the same for both
                conn.execute("SELECT count(*) FROM observations WHERE target = ?", (name,))
            times: dict[str, list[float]] = {"window": [], "per_target": []}
            counts: dict[str, int] = {}
            for _ in range(ROUNDS):
                began = time.perf_counter()
                got = 0
                for start in range(0, len(wanted), 500):  # as many bound values as SQLite takes
                    chunk = wanted[start : start + 500]
                    query = WINDOWED.format(marks=",".join("?" * len(chunk)))
                    got += len(conn.execute(query, (*chunk, since, SPARK_OBSERVATIONS)).fetchall())
                times["window"].append((time.perf_counter() - began) * 1000)
                counts["window"] = got
                began = time.perf_counter()
                got = sum(
                    len(conn.execute(PER_TARGET, (n, since, SPARK_OBSERVATIONS)).fetchall())
                    for n in wanted
                )
                times["per_target"].append((time.perf_counter() - began) * 1000)
                counts["per_target"] = got
        med = {k: statistics.median(v) for k, v in times.items()}
        out[str(targets)] = {
            "rows_per_target": rows,
            "rows_read": counts,
            "ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
            "median_ms": med,
            "window_over_per_target": med["window"] / med["per_target"],
        }
    return out


def main(argv: list[str]) -> None:
    configure_logging(level="warning", fmt="auto")  # on stderr: stdout is the JSON
    mode, rest = argv[0], argv[1:]
    if mode == "page":
        targets, rows = (int(rest[0]), int(rest[1])) if rest else (5000, 200)
        result = page(targets, rows)
    elif mode == "compare":
        targets, rows = (int(rest[1]), int(rest[2])) if len(rest) > 1 else (5000, 200)
        result = compare(Path(rest[0]), targets, rows)
    elif mode == "sparklines":
        targets, rows = (int(rest[0]), int(rest[1])) if rest else (5000, 200)
        result = sparklines(targets, rows)
    elif mode == "sql":
        result = sql()
    else:
        raise SystemExit(f"unknown mode {mode!r}: page, compare or sql")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
