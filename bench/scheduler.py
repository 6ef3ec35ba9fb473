"""APScheduler's cost per fire, at 100 and at 5,000 jobs, firing 1,000 times a second either way.

The jobs are as the daemon adds them (``monitor.daemon.Daemon.schedule``): an ``async def`` job
per target, an interval trigger with jitter, ``max_instances=1``, ``coalesce=True``,
``misfire_grace_time=None``, first runs spread over one interval; the job itself does nothing but
count. Each scale runs in a new process (``python bench/scheduler.py N``): after a warm-up of one
interval and a half, the process's CPU time over a window / the fires in it is the scheduler's
cost per fire (with the event loop's); lateness is each fire's start minus its scheduled time
(``EVENT_JOB_SUBMITTED``), p50/p99. ``run()`` returns both scales' figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

ROOT = Path(__file__).resolve().parent.parent
RATE = 1000.0  # fires a second
WINDOW = 8.0


async def measure(jobs: int) -> dict[str, float]:
    interval = jobs / RATE
    jitter = min(1.0, interval / 10)
    fired = 0
    late: list[float] = []
    counting = False

    async def job() -> None:
        nonlocal fired
        fired += 1

    def submitted(event: JobSubmissionEvent) -> None:
        if counting:
            now = datetime.now(UTC)
            late.extend((now - t).total_seconds() for t in event.scheduled_run_times)

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    now = datetime.now(UTC)
    rng = random.Random(1)
    for i in range(jobs):
        scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval - jitter / 2, jitter=jitter),
            id=f"target:t{i}",
            next_run_time=now + timedelta(seconds=rng.uniform(0, interval)),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    scheduler.start()
    await asyncio.sleep(interval * 1.5)
    counting = True
    cpu0, fired0 = time.process_time(), fired
    await asyncio.sleep(WINDOW)
    cpu1, fired1 = time.process_time(), fired
    counting = False
    scheduler.shutdown(wait=False)
    late.sort()
    return {
        "jobs": jobs,
        "fires": fired1 - fired0,
        "cpu_ms_per_fire": (cpu1 - cpu0) / max(fired1 - fired0, 1) * 1000,
        "cpu_share": (cpu1 - cpu0) / WINDOW,
        "lateness_p50_ms": statistics.median(late) * 1000 if late else 0.0,
        "lateness_p99_ms": late[int(len(late) * 0.99)] * 1000 if late else 0.0,
    }


def run(scales: tuple[int, ...] = (100, 5000)) -> dict[str, object]:
    out: dict[str, object] = {}
    for n in scales:
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), str(n)],
            check=True, capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        out[str(n)] = json.loads(done.stdout)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))))
