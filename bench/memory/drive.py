"""The daemon of a tree at 5,000 targets, run as ``bench/pipeline.py`` runs it, its memory at each
stage: RSS and VmHWM (``/proc``) and, through ``sitecustomize.py`` here (SIGUSR1), glibc's
``mallinfo2``, pymalloc's ``sys._debugmallocstats()`` and with TRACE > 0 tracemalloc's top lines.

    .venv/bin/python bench/memory/drive.py TREE OUT [TRACE] [VAR=VALUE ...]

TREE: a checkout (``git archive main | tar -x -C /tmp/main`` for another tree); OUT: the report
file; TRACE: tracemalloc's frames (0: off; tracing slows the daemon ~2x, so it falls behind);
VAR=VALUE: more environment for the daemon (``MALLOC_MMAP_THRESHOLD_=...``, ``MEMPROBE_TRIM=1``:
malloc_trim every second). Stages: started, after the warm-up (every target's first check),
after a /metrics scrape (as the bench does), after the unchanged and the changing windows, right
after the bench's second scrape (what ``make bench`` reports as RSS) and 5 s later. About 2.5 min.
"""

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

tree = Path(sys.argv[1]).resolve()
out = Path(sys.argv[2]).resolve()
trace = sys.argv[3] if len(sys.argv) > 3 else "0"
extra_env = dict(a.split("=", 1) for a in sys.argv[4:])
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from bench import pipeline as p  # noqa: E402 -- after sys.path
from bench.harness import start_server, write_atomically  # noqa: E402 -- after sys.path
from tests.daemon_harness import DaemonProcess, free_port, wait_for  # noqa: E402 -- after sys.path
from tests.servers import Reply, ThreadedPageServer  # noqa: E402 -- after sys.path

scale = p.SCALES[5000]
out.write_text(f"tree {tree} trace {trace} env {extra_env} load {os.getloadavg()}\n")


def stage(name: str, daemon: DaemonProcess, *, dump: bool = True) -> None:
    rss, hwm = p.rss_mb(daemon.proc.pid)
    took = time.monotonic() - daemon.started
    with out.open("a") as f:
        f.write(
            f"--- {name} t={took:.0f}s RSS {rss:.1f} HWM {hwm:.1f} load {os.getloadavg()[0]:.2f}\n"
        )
    if dump:
        os.kill(daemon.proc.pid, signal.SIGUSR1)
        time.sleep(3 if trace == "0" else 40)


with tempfile.TemporaryDirectory(prefix="memprobe-") as tmp:
    workdir = Path(tmp)
    page_file = workdir / "page.html"
    write_atomically(page_file, p.page(0))
    log = workdir / "requests.log"
    server, url = start_server(page_file, validators=False, log=log)
    receiver = ThreadedPageServer()
    receiver.route(p.SLACK_PATH, Reply(200, b"ok"))
    try:
        with receiver:
            port = free_port()
            cfg = p.config(workdir, url, receiver.url + p.SLACK_PATH.lstrip("/"), port, scale)
            env = {
                "PYTHONPATH": f"{HERE / 'probe'}:{tree}",
                "MEMPROBE_OUT": str(out),
                "MEMPROBE_TRACE": trace,
                **extra_env,
            }
            with DaemonProcess(cfg, env=env) as daemon:
                if not wait_for(lambda: p.healthy(port), timeout=120, every=0.1):
                    raise SystemExit("the daemon did not start")
                stage("healthy", daemon)
                time.sleep(
                    max(
                        0.0,
                        daemon.started
                        + scale.warm
                        + (60 if trace != "0" else 0)
                        - time.monotonic(),
                    )
                )
                n = len(p.requests_logged(log))
                stage(f"after warm-up ({n} checks)", daemon)
                p.lateness(port)
                stage("after a /metrics scrape", daemon, dump=False)
                checks, cpu = p.cpu_window(daemon.proc.pid, log, scale.window_u)
                stage(f"after unchanged window ({checks} checks, {cpu:.1f} ms)", daemon)
                checks, cpu = p.cpu_window(
                    daemon.proc.pid,
                    log,
                    scale.window_c,
                    changing=page_file,
                    interval=scale.interval,
                )
                stage(f"after changing window ({checks} checks, {cpu:.1f} ms)", daemon)
                wait_for(lambda: False, timeout=3.0)
                p.lateness(port)
                stage(
                    "end (right after the bench's second /metrics scrape: what the bench reads)",
                    daemon,
                    dump=False,
                )
                time.sleep(5)
                stage("end + 5 s", daemon)
                daemon.terminate(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=10)
