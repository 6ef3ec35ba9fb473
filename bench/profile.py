"""Where the daemon's CPU goes: ``python -m monitor run`` under cProfile, as ``bench/pipeline.py``
runs it (100 targets every 2 s on the page server process, a file sink and a Slack receiver).

``python bench/profile.py [unchanged|changing] [SECONDS] [TARGETS]``: the daemon runs SECONDS
(default 20) after a warm-up of 4 s, with the page unchanged or its ticker moving every interval;
then SIGTERM (the daemon stops cleanly and cProfile writes its file). Prints the functions by own
time and by cumulative time, and keeps the profile in ``var/profile-MODE.prof`` (``python -m
pstats`` reads it). cProfile slows what it measures (about 1.5-2x): read the shares, not the times.
"""

from __future__ import annotations

import io
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import start_server, write_atomically  # noqa: E402 -- after sys.path
from bench.pipeline import SCALES, SLACK_PATH, Scale, config, healthy, page  # noqa: E402
from tests.daemon_harness import _env, free_port, wait_for  # noqa: E402 -- same
from tests.servers import Reply, ThreadedPageServer  # noqa: E402 -- same


def profile(mode: str, seconds: float, targets: int) -> str:
    base = SCALES[100]
    scale = Scale(targets, base.interval, base.warm, seconds, seconds)
    out = ROOT / "var" / f"profile-{mode}.prof"
    out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        page_file = workdir / "page.html"
        write_atomically(page_file, page(0))
        server, url = start_server(page_file, validators=False)
        receiver = ThreadedPageServer()
        receiver.route(SLACK_PATH, Reply(200, b"ok"))
        try:
            with receiver:
                port = free_port()
                cfg = config(workdir, url, receiver.url + SLACK_PATH.lstrip("/"), port, scale)
                cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "monitor", "run"]
                with (workdir / "daemon.log").open("w") as log:
                    proc = subprocess.Popen(
                        [*cmd, "--config", str(cfg)],
                        cwd=workdir, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                    wait_for(lambda: healthy(port), timeout=60, every=0.1)
                    time.sleep(scale.warm)
                    step, end = 0, time.monotonic() + seconds
                    while time.monotonic() < end:
                        if mode == "changing":
                            step += 1
                            write_atomically(page_file, page(step))
                        time.sleep(scale.interval)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=10)
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return text.getvalue()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "unchanged"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    targets = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    print(profile(mode, seconds, targets))
