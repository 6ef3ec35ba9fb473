"""Start-up: the wall time of ``check FILE`` (the seed page saved to a file) and of ``--help``,
each run ``ROUNDS`` times as a new process; median, min and max."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_harness import _env  # noqa: E402 -- after sys.path
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- same

ROUNDS = 7


def wall(args: list[str]) -> dict[str, float]:
    times = []
    for _ in range(ROUNDS):
        start = time.monotonic()
        subprocess.run(args, check=True, capture_output=True, env=_env(), timeout=60)
        times.append(time.monotonic() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        page = Path(tmp) / "seed.html"
        page.write_text(ticker_html(SEED_QUOTES, date_line=SEED_DATE, filler_kb=200))
        cli = [sys.executable, "-m", "monitor"]
        return {
            "check FILE": wall([*cli, "check", str(page)]),
            "--help": wall([*cli, "--help"]),
            "python -c pass": wall([sys.executable, "-c", "pass"]),
        }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
