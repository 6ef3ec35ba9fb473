"""``bench/overheads.py`` compares the fixed costs around a check with what they replaced: it must
keep running as the fetcher and the store change (a few calls each, no figure judged: figures
belong to the bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_overheads_bench_runs_and_times_each_pair() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overheads.py"), "--calls", "5", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["fetch", "hop", "start"], done.stdout
    assert all("now/before" in row for row in rows), done.stdout
