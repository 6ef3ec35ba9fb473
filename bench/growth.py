"""``growth``: the daemon's cost per check on a fresh state file and on one holding 10 million rows.

Issue 11 asks that CPU per check stay flat as the history grows to 10 million rows. In one run,
the real daemon at 100 targets (``bench/pipeline.py``'s scale, page server, windows and CPU
method: process user+sys / checks the page server counted, unchanged and changing windows) is
measured twice with the same configuration:

* ``fresh``: a new SQLite state file;
* ``big``: ``var/bench-growth-10m.db``, the fresh run's file with 10,000,000 ``observations``
  rows and 1,000,000 sent ``outbox`` rows added, spread over the 28 days before the fill (the
  default ``history_retention`` is 30 days, so housekeeping expires none of them).

For each file, besides the windows: ``/api/status`` latency while the daemon runs (the median of 5
requests after the windows, so they do not pollute the CPU figures; whether the page got its store
answers within its 3 s deadline), and with the daemon stopped, the store calls of a housekeeping
pass (``expire_history``, ``outbox_counts``) and of the status page (``history`` of the last 7
days, ``outbox_rows``), each timed in this process, with its ``EXPLAIN QUERY PLAN``. Every figure
is also given as the ratio big / fresh.

The big file is filled directly (``sqlite3`` ``executemany`` in transactions of a million rows,
``journal_mode=OFF``, ``synchronous=OFF``), copying the snapshots and events the fresh run wrote;
it took 137 s here and 7 GB of disk. It is kept, with ``var/bench-growth-10m.json``
saying what it holds, and filled again only when the store's schema version, the row counts or the
date make it stale (its rows would start expiring two days after the fill). The daemon's runs add
a few thousand rows to it each time.

Run: ``make bench-growth`` (``BENCH_SECTIONS=growth``; about 1.5 minutes with the file cached).
Not part of ``make bench``, which would pass 10 minutes. ``BENCH_GROWTH_ROWS`` sets the
observation count (``10000000``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import SetupError, start_server, write_atomically  # noqa: E402 -- sys.path
from bench.pipeline import (  # noqa: E402 -- same
    SCALES,
    SLACK_PATH,
    Figures,
    _windows,
    config,
    healthy,
    page,
    rss_mb,
)
from monitor.settings import Settings  # noqa: E402 -- same
from monitor.status import SPARK_OBSERVATIONS  # noqa: E402 -- same
from monitor.store.sqlite import SCHEMA_VERSION, SqliteStore, _ts  # noqa: E402 -- same
from tests.daemon_harness import DaemonProcess, free_port, wait_for  # noqa: E402 -- same
from tests.servers import Reply, ThreadedPageServer  # noqa: E402 -- same

SCALE = SCALES[100]
BIG = ROOT / "var" / "bench-growth-10m.db"
META = BIG.with_suffix(".json")
OUTBOX_ROWS = 1_000_000
#: the bulk rows lie within the SPREAD before the fill; retention (30 d) minus SPREAD is how long
#: the cached file stays valid
SPREAD = timedelta(days=28)
FRESH_FOR = timedelta(days=2)
CHUNK = 200_000
TRANSACTION = 1_000_000
STATUS_REQUESTS = 3
#: above this many rows in the last 7 days, ``store.history`` is not called here (it would hold
#: gigabytes and minutes); the statement alone is timed and its rows counted
HISTORY_CAP = 300_000

#: the statements behind each timed store call (as monitor/store/sqlite.py writes them)
PLANS = {
    "expire_history observations": "DELETE FROM observations WHERE id IN"
    " (SELECT id FROM observations WHERE observed_at < ?1 LIMIT 5000)",
    "expire_history outbox": "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
    " WHERE status IN ('sent', 'dead', 'silenced') AND created_at < ?1 LIMIT 5000)",
    "outbox_counts": "SELECT sink, status, count(*) FROM outbox GROUP BY sink, status"
    " ORDER BY sink, status",
    "history since 7 d": "SELECT target, observed_at, snapshot_json FROM observations"
    " WHERE observed_at >= ?1 ORDER BY observed_at, id",
    "outbox_rows recent": "SELECT id FROM outbox ORDER BY id DESC LIMIT 80",
    "outbox_rows dead": "SELECT id FROM outbox WHERE status = 'dead' ORDER BY id DESC LIMIT 20",
}


def _rows_wanted() -> int:
    return int(os.environ.get("BENCH_GROWTH_ROWS", "10000000"))


# --- the daemon ----------------------------------------------------------------------------------


def _api_status(port: int) -> tuple[float, bool]:
    """One ``/api/status``: wall ms, and whether the page had its store answers."""
    began = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=60) as r:
        body = json.loads(r.read())
    return (time.monotonic() - began) * 1000, bool(body.get("store_ok"))


def measure(database: Path) -> dict[str, Any]:
    """The daemon at 100 targets on ``database`` (pipeline's windows), then ``/api/status``."""
    figures = Figures()
    status_ms: list[float] = []
    status_ok = True
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        workdir = Path(tmp)
        page_file = workdir / "page.html"
        write_atomically(page_file, page(0))
        log = workdir / "requests.log"
        server, url = start_server(page_file, validators=False, log=log)
        receiver = ThreadedPageServer()
        receiver.route(SLACK_PATH, Reply(200, b"ok"))
        try:
            with receiver:
                port = free_port()
                cfg = config(workdir, url, receiver.url + SLACK_PATH.lstrip("/"), port, SCALE)
                text = cfg.read_text(encoding="utf-8")
                cfg.write_text(text.replace(str(workdir / "state.db"), str(database)), "utf-8")
                with DaemonProcess(cfg) as daemon:
                    if not wait_for(lambda: healthy(port), timeout=120, every=0.1):
                        raise SetupError("the daemon did not start")
                    _windows(daemon, SCALE, log, page_file, port=port, figures=figures)
                    for _ in range(STATUS_REQUESTS):
                        ms, ok = _api_status(port)
                        status_ms.append(ms)
                        status_ok = status_ok and ok
                    figures.rss_mb, figures.peak_rss_mb = rss_mb(daemon.proc.pid)
                    daemon.terminate(timeout=300)
                    figures.errors = [
                        str(e.get("event"))
                        for e in daemon.logs()
                        if e.get("level") in ("error", "critical") or "Traceback" in str(e)
                    ][:5]
        finally:
            server.terminate()
            server.wait(timeout=10)
    return {
        **asdict(figures),
        "api_status_ms": statistics.median(status_ms),
        "api_status_store_ok": status_ok,
    }


# --- the store calls, timed in this process ------------------------------------------------------


def store_calls(database: Path) -> dict[str, float | None]:
    """Wall ms of the store calls behind housekeeping and the status page, on ``database``."""

    async def timed() -> dict[str, float | None]:
        now = datetime.now(UTC)
        retention = timedelta(seconds=Settings().monitor.history_retention)
        store = SqliteStore(database)
        await store.open()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "expire_history_ms": lambda: store.expire_history(now - retention),
            "outbox_counts_ms": store.outbox_counts,
            "outbox_rows_recent_ms": lambda: store.outbox_rows(limit=80),
            "outbox_rows_dead_ms": lambda: store.outbox_rows(status="dead", limit=20),
        }
        out: dict[str, float | None] = {}
        since = now - timedelta(days=7)
        began = time.monotonic()
        with contextlib.closing(sqlite3.connect(database)) as conn:
            rows = sum(1 for _ in conn.execute(PLANS["history since 7 d"], (_ts(since),)))
        out["history_7d_rows"] = rows
        out["history_7d_sql_ms"] = (time.monotonic() - began) * 1000
        if rows <= HISTORY_CAP:
            calls["history_7d_ms"] = lambda: store.history(since=since)
        else:
            out["history_7d_ms"] = None
        with contextlib.closing(sqlite3.connect(database)) as conn:
            names = [str(r[0]) for r in conn.execute("SELECT name FROM targets ORDER BY name")]

        async def sparklines() -> None:  # what the status page reads: each target's newest
            for name in names:
                await store.history(target=name, since=since, latest=SPARK_OBSERVATIONS)

        calls["sparklines_ms"] = sparklines
        try:
            for name, call in calls.items():
                began = time.monotonic()
                await call()
                out[name] = (time.monotonic() - began) * 1000
        finally:
            await store.aclose()
        return out

    return asyncio.run(timed())


def plans(database: Path) -> dict[str, list[str]]:
    """``EXPLAIN QUERY PLAN`` of each statement in :data:`PLANS`."""
    cutoff = _ts(datetime.now(UTC) - timedelta(days=30))
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {
            name: [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (cutoff,))]
            if "?1" in sql
            else [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            for name, sql in PLANS.items()
        }


def counts(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 -- two fixed names
            for table in ("observations", "outbox")
        }


# --- the big file --------------------------------------------------------------------------------


def _valid(rows: int) -> bool:
    """Is the cached big file there, of this schema, these counts, and not yet expiring?"""
    try:
        meta = json.loads(META.read_text(encoding="utf-8"))
        with contextlib.closing(sqlite3.connect(f"file:{BIG}?mode=ro", uri=True)) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except (OSError, ValueError, sqlite3.Error):
        return False
    filled = datetime.fromisoformat(str(meta.get("filled_at")))
    return (
        version == SCHEMA_VERSION
        and meta.get("observations") == rows
        and meta.get("outbox") == OUTBOX_ROWS
        and datetime.now(UTC) - filled < FRESH_FOR
    )


def _times(n: int, end: datetime) -> Iterator[str]:
    """``n`` store timestamps evenly over the SPREAD before ``end``, oldest first."""
    start = end - SPREAD
    step = SPREAD / n
    for i in range(n):
        yield _ts(start + step * i)


def _insert(conn: sqlite3.Connection, sql: str, rows: Iterator[tuple[object, ...]]) -> None:
    """``rows`` into ``sql`` by executemany, CHUNK rows a call, TRANSACTION rows a commit."""
    done = 0
    conn.execute("BEGIN")
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            break
        conn.executemany(sql, chunk)
        done += len(chunk)
        if done % TRANSACTION == 0:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")


def fill(template: Path, rows: int) -> float:
    """Make :data:`BIG` from ``template`` (a file the daemon wrote) plus the bulk rows; seconds."""
    began = time.monotonic()
    BIG.parent.mkdir(parents=True, exist_ok=True)
    tmp = BIG.with_suffix(".filling")
    tmp.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(template)) as src,
        contextlib.closing(sqlite3.connect(tmp)) as dst,
    ):
        src.backup(dst)
    end = datetime.now(UTC)
    with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        snapshots = [r[0] for r in conn.execute("SELECT DISTINCT snapshot_json FROM observations")]
        targets = [r[0] for r in conn.execute("SELECT name FROM targets ORDER BY name")]
        events = conn.execute("SELECT sink, target, event_json FROM outbox ORDER BY id").fetchall()
        if not snapshots or not targets or not events:
            raise SetupError(f"the fresh run left no history to copy in {template}")
        _insert(
            conn,
            "INSERT INTO observations (target, observed_at, snapshot_json) VALUES (?, ?, ?)",
            (
                (targets[i % len(targets)], at, snapshots[(i // len(targets)) % len(snapshots)])
                for i, at in enumerate(_times(rows, end))
            ),
        )
        _insert(
            conn,
            "INSERT INTO outbox (dedup_key, sink, target, check_id, event_json, status, attempts,"
            " created_at, next_attempt_at, sent_at, updated_at)"
            " VALUES (?1, ?2, ?3, ?4, ?5, 'sent', 1, ?6, ?6, ?6, ?6)",
            (
                (f"growth:{i}", *events[i % len(events)][:2], f"growth-{i // 16:08x}",
                 events[i % len(events)][2], at)
                for i, at in enumerate(_times(OUTBOX_ROWS, end))
            ),
        )  # fmt: skip
        conn.execute("PRAGMA journal_mode = WAL")
    tmp.replace(BIG)
    seconds = time.monotonic() - began
    META.write_text(
        json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "observations": rows,
                "outbox": OUTBOX_ROWS,
                "filled_at": end.isoformat(),
                "fill_seconds": round(seconds, 1),
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return seconds


# --- the section ---------------------------------------------------------------------------------

#: the figures given as big / fresh
RATIOS = (
    "cpu_ms_u", "cpu_ms_c", "rss_mb", "lateness_p99_ms", "api_status_ms", "expire_history_ms",
    "outbox_counts_ms", "history_7d_rows", "history_7d_sql_ms", "history_7d_ms", "outbox_rows_recent_ms",
    "outbox_rows_dead_ms", "sparklines_ms",
)  # fmt: skip


def run() -> dict[str, Any]:
    rows = _rows_wanted()
    with tempfile.TemporaryDirectory(prefix="bench-growth-fresh-") as tmp:
        fresh_db = Path(tmp) / "state.db"
        fresh = measure(fresh_db)
        fresh |= store_calls(fresh_db)
        fresh |= {"rows": counts(fresh_db), "plans": plans(fresh_db)}
        filled: float | None = None
        if not _valid(rows):
            for stale in (BIG, BIG.with_name(BIG.name + "-wal"), BIG.with_name(BIG.name + "-shm")):
                stale.unlink(missing_ok=True)
            filled = fill(fresh_db, rows)
    big = {"rows": counts(BIG)}
    big |= measure(BIG)
    big |= store_calls(BIG)
    big["plans"] = plans(BIG)
    ratios = {
        key: (big[key] / fresh[key] if big.get(key) is not None and fresh.get(key) else None)
        for key in RATIOS
    }
    free = shutil.disk_usage(BIG.parent).free
    return {
        "fresh": fresh,
        "big": big,
        "big_over_fresh": ratios,
        "fill_seconds": filled,
        "big_file_gb": BIG.stat().st_size / 1e9,
        "disk_free_gb": free / 1e9,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
