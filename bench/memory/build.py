# ruff: noqa: E402, RET503, SIM115 -- a probe script: imports timed after the RSS before them
"""The daemon's parts at 5,000 targets, built (not run) in-process: RSS after the imports, the
settings, the app (plans, metrics ...), the daemon (board) and the 5,000 APScheduler jobs; with
TRACE=1 tracemalloc's top lines of each step (the snapshots inflate the RSS then).

    [TRACE=1] .venv/bin/python bench/memory/build.py TREE
"""

import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

tree = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(tree))
TRACE = os.environ.get("TRACE") == "1"


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


base = rss()
if TRACE:
    tracemalloc.start(3)
import monitor.cli  # noqa
from monitor.app import build_app
from monitor.daemon import Daemon
from monitor.settings import load_settings
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from datetime import UTC

print(f"python alone {base:.1f} MB; after imports {rss():.1f} MB")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from bench import pipeline as p

marks = {}


def mark(name):
    gc.collect()
    marks[name] = (rss(), tracemalloc.take_snapshot() if TRACE else None)
    print(
        f"{name}: RSS {marks[name][0]:.1f} MB"
        + (f", traced {tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB" if TRACE else "")
    )


def diff(a, b, n=12, key="lineno"):
    if not TRACE:
        return
    for st in marks[b][1].compare_to(marks[a][1], key)[:n]:
        print(f"   {st.size_diff / 1e6:7.2f} MB {st.count_diff:8d}  {st.traceback}")


async def main():
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        cfg = p.config(w, "http://127.0.0.1:9/", "http://127.0.0.1:9/services/x", 0, p.SCALES[5000])
        mark("imports")
        settings = load_settings(cfg, env={})
        mark("settings")
        app = await build_app(settings)
        mark("app")
        d = Daemon(app)
        mark("daemon")
        s = AsyncIOScheduler(timezone=UTC)
        d._scheduler = s
        d.schedule(s)
        s.start(paused=True)
        mark("jobs")
        print("settings:")
        diff("imports", "settings")
        print("app (plans, metrics ...):")
        diff("settings", "app")
        print("daemon (board):")
        diff("app", "daemon")
        print("jobs:")
        diff("daemon", "jobs")
        s.shutdown(wait=False)
        await app.aclose()


asyncio.run(main())
