"""The straightforward stack the benchmarks compare with: ticker-monitor's own dependencies, naively.

APScheduler jobs (one per target, first runs spread as the daemon spreads them), one
``httpx.AsyncClient``, the whole page's selectolax DOM, a regular expression per ``<li>``, and one
sqlite3 commit (WAL, ``synchronous=FULL``) per check; with ``--events FILE``, every change's
events appended to a file and fsynced. Run: ``python bench/reference.py TARGETS.txt STATE.db
INTERVAL [--events FILE]`` (one URL a line); SIGTERM stops it.
"""

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import sys
from datetime import UTC, datetime, timedelta

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from selectolax.lexbor import LexborHTMLParser

ITEM = re.compile(r"([A-Z]{3})\s*/\s*([A-Z]{3})\s*=\s*([0-9.]+)\s*(?:([−+-]?[0-9.]+)\s*%)?")


async def main() -> None:
    urls = open(sys.argv[1]).read().split()  # noqa: ASYNC230, SIM115 -- the naive script
    interval = float(sys.argv[3])
    events = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--events" else None
    db = sqlite3.connect(sys.argv[2], isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS state (url TEXT PRIMARY KEY, quotes TEXT)")
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=8))
    last: dict[str, dict[str, list[str | None]]] = {}

    async def check(url: str) -> None:
        page = (await client.get(url)).content
        quotes = {}
        for li in LexborHTMLParser(page).css("li"):
            m = ITEM.search(li.text())
            if m:
                quotes.setdefault(f"{m[1]}/{m[2]}", [m[3], m[4]])
        old = last.get(url)
        last[url] = quotes
        db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (url, json.dumps(quotes)))
        if events and old is not None and old != quotes:
            lines = [
                json.dumps({"url": url, "pair": p, "old": old.get(p), "new": q}) + "\n"
                for p, q in quotes.items()
                if old.get(p) != q
            ]
            with open(events, "a") as f:  # noqa: ASYNC230 -- the naive script
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())

    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)
    for url in urls:
        first = now + timedelta(seconds=random.uniform(0, min(interval, 30.0)))
        scheduler.add_job(check, "interval", seconds=interval, args=(url,), next_run_time=first)
    scheduler.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
