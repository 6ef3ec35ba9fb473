"""The real daemon, and the straightforward-stack reference, against a page server in another process.

For each scale (100, 1,000 and 5,000 targets: distinct URLs on one page server, ``python -m
tests.servers`` in a process of its own, serving a ~200 KB page without validators, logging every
request), one run of ``python -m monitor run`` (info-level JSON logs, SQLite state, a file sink and
a Slack receiver in this process answering at once) and one of ``bench/reference.py``:

* a warm-up (the first checks of every target: baselines);
* window U, one or more whole intervals with the page unchanged: CPU per check = the process's user
  + system time / the checks the server counted in the window;
* window C (not for the reference at 5,000): the ticker changes every interval, so that every check
  sees a change: CPU per check again, and for the daemon the time from the server sending a target
  the changed page to the Slack receiver getting its alert (p50/p99);
* the daemon's scheduler lateness (its own histogram, interpolated as Prometheus does) and RSS.

``run(scales)`` returns the figures (``bench/run.py`` prints and stores them).
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import SetupError, start_server, write_atomically  # noqa: E402 -- sys.path
from tests.daemon_harness import DaemonProcess, free_port, wait_for  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- same
from tests.servers import Reply, ThreadedPageServer  # noqa: E402 -- same

SLACK_PATH = "/services/T0BENCH/B0BENCH/bench-token"
TICK = 1 / 100  # /proc/PID/stat counts in clock ticks (USER_HZ)


@dataclass(frozen=True)
class Scale:
    targets: int
    interval: float
    warm: float
    window_u: float
    window_c: float
    reference_c: bool = True


SCALES = {
    100: Scale(100, 2.0, warm=4.0, window_u=6.0, window_c=6.0),
    1000: Scale(1000, 10.0, warm=12.0, window_u=10.0, window_c=10.0),
    # the first runs (whole reads) are spread over the minute, then every target runs once a
    # minute, evenly: the warm-up passes the first round, the unchanged window sees half the
    # targets, the changing one a whole round (every target sees the change once); the
    # reference, saturated here, runs only the unchanged window
    5000: Scale(5000, 60.0, warm=62.0, window_u=30.0, window_c=60.0, reference_c=False),
}


@dataclass
class Figures:
    checks_u: int = 0
    cpu_ms_u: float = 0.0
    checks_c: int = 0
    cpu_ms_c: float | None = None
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    lateness_p50_ms: float | None = None
    lateness_p99_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latencies: int = 0
    alerts: int = 0
    errors: list[str] = field(default_factory=list)


def page(step: int) -> str:
    quotes = [
        (p, f"{0.28575 + step / 100000:.5f}" if p == "TMT/USD" else r, c) for p, r, c in SEED_QUOTES
    ]
    return ticker_html(quotes, date_line=SEED_DATE, filler_kb=200)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    got = {
        k: int(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(.*)$", status, re.M)
    }
    return got.get("VmRSS", 0.0), got.get("VmHWM", 0.0)


def requests_logged(log: Path) -> list[tuple[float, str, str]]:
    rows = []
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 4:
            rows.append((float(parts[0]), parts[1], parts[3]))
    return rows


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus's histogram_quantile over cumulative (le, count) buckets, in ms."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le * 1000
            width = count - prev_count
            frac = 0.0 if width <= 0 else (rank - prev_count) / width
            return (prev_le + (le - prev_le) * frac) * 1000
        prev_le, prev_count = le, count
    return None


_BUCKET = re.compile(
    r'^ticker_monitor_scheduler_lateness_seconds_bucket\{le="([^"]+)",target="[^"]*"\} (\S+)$', re.M
)


def lateness(port: int) -> dict[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        text = r.read().decode()
    sums: dict[float, float] = {}
    for le, value in _BUCKET.findall(text):
        key = float("inf") if le == "+Inf" else float(le)
        sums[key] = sums.get(key, 0.0) + float(value)
    return sums


def config(
    workdir: Path,
    url: str,
    slack: str,
    port: int,
    scale: Scale,
    *,
    log_level: str = "info",
    with_slack: bool = True,
) -> Path:
    """The daemon's settings; without ``with_slack`` the rule has the file sink alone (what the
    reference does: ``bench/history.py`` measures both)."""
    targets = "".join(
        f'[[targets]]\nname = "t{i}"\nurl = "{url}?t={i}"\ninterval = "{scale.interval:g}s"\n'
        "retries = 0\n\n"
        for i in range(scale.targets)
    )
    text = f"""
[monitor]
database = "sqlite:///{workdir / "state.db"}"
log_format = "json"
log_level = "{log_level}"
listen = "127.0.0.1:{port}"
max_per_host = 8
max_concurrent_checks = 16

{targets}
[[rules]]
name = "all"
sinks = {'["audit", "slack"]' if with_slack else '["audit"]'}

[sinks.audit]
type = "file"
path = "{workdir / "audit.jsonl"}"

[sinks.slack]
type = "slack"
webhook_url = "{slack}"
min_interval = "0s"
body_template = "bench $target $dedup_id"
"""
    path = workdir / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _latencies(
    fetched: list[tuple[float, str, str]], posts: list[tuple[float, bytes]], since: float
) -> list[float]:
    """Seconds from the first fetch of each new page version by a target to its alert's arrival."""
    first: dict[tuple[str, str], float] = {}
    for at, query, version in fetched:
        if at >= since:
            first.setdefault((query.removeprefix("t="), version), at)
    arrivals: dict[str, list[float]] = {}
    for at, body in posts:
        for target in re.findall(rb"bench t(\d+) [0-9a-f]{8}", body):
            arrivals.setdefault(target.decode(), []).append(at)
    out = []
    for (target, _), at in first.items():
        later = [t for t in arrivals.get(target, []) if t >= at]
        if later:
            out.append(min(later) - at)
    return out


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def measure_daemon(
    scale: Scale,
    *,
    log_level: str = "info",
    env: dict[str, str] | None = None,
    with_slack: bool = True,
) -> Figures:
    """The daemon's figures at ``scale``; ``env`` adds to its environment (``PYTHONPATH``: the
    daemon of another tree, ``bench/history.py``)."""
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
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
                slack = receiver.url + SLACK_PATH.lstrip("/")
                cfg = config(
                    workdir, url, slack, port, scale, log_level=log_level, with_slack=with_slack
                )
                with DaemonProcess(cfg, env=env) as daemon:
                    if not wait_for(lambda: healthy(port), timeout=120, every=0.1):
                        raise SetupError("the daemon did not start")
                    changed_at = _windows(daemon, scale, log, page_file, port=port, figures=figures)
                    figures.rss_mb, figures.peak_rss_mb = rss_mb(daemon.proc.pid)
                    daemon.terminate(timeout=60)
                    figures.errors = [
                        str(e.get("event"))
                        for e in daemon.logs()
                        if e.get("level") in ("error", "critical") or "Traceback" in str(e)
                    ][:5]
                posts = [(r.at, r.body) for r in receiver.requests if r.path == SLACK_PATH]
                figures.alerts = len(posts)
                waits = sorted(_latencies(requests_logged(log), posts, changed_at))
                figures.latencies = len(waits)
                if waits:
                    figures.latency_p50_ms = statistics.median(waits) * 1000
                    figures.latency_p99_ms = (
                        waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)
    return figures


def cpu_window(
    pid: int, log: Path, seconds: float, *, changing: Path | None = None, interval: float = 0.0
) -> tuple[int, float]:
    """The checks the server counted over ``seconds`` and ``pid``'s CPU ms per check; with
    ``changing``, that page's ticker moves every ``interval`` meanwhile."""
    c0, n0 = cpu_seconds(pid), len(requests_logged(log))
    end = time.monotonic() + seconds
    step = 0
    while time.monotonic() < end:
        if changing is not None:
            step += 1
            write_atomically(changing, page(step))
        time.sleep(min(interval or seconds, max(0.0, end - time.monotonic())))
    c1, n1 = cpu_seconds(pid), len(requests_logged(log))
    return n1 - n0, (c1 - c0) / max(n1 - n0, 1) * 1000


def _windows(
    daemon: DaemonProcess, scale: Scale, log: Path, page_file: Path, *, port: int, figures: Figures
) -> float:
    """Warm-up, window U, window C; returns when the first change was written."""
    pid = daemon.proc.pid
    start = daemon.started
    time.sleep(max(0.0, start + scale.warm - time.monotonic()))
    late0 = lateness(port)
    figures.checks_u, figures.cpu_ms_u = cpu_window(pid, log, scale.window_u)
    changed_at = time.monotonic()
    figures.checks_c, figures.cpu_ms_c = cpu_window(
        pid, log, scale.window_c, changing=page_file, interval=scale.interval
    )
    # the alerts of the last change arrive after the window: wait for the outbox to drain
    wait_for(lambda: False, timeout=3.0)
    late1 = lateness(port)
    buckets = sorted((le, late1.get(le, 0.0) - late0.get(le, 0.0)) for le in late1)
    figures.lateness_p50_ms = quantile(buckets, 0.5)
    figures.lateness_p99_ms = quantile(buckets, 0.99)
    return changed_at


def _skipped(path: Path) -> list[str]:
    """What the reference's APScheduler said before SIGTERM: skipped and missed runs."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [
        f"{n} {what}"
        for what, n in (
            ("runs skipped (maximum number of running instances)", text.count("skipped: maximum")),
            ("runs missed", text.count("was missed by")),
        )
        if n
    ]


def measure_reference(scale: Scale) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp:
        workdir = Path(tmp)
        page_file = workdir / "page.html"
        write_atomically(page_file, page(0))
        log = workdir / "requests.log"
        server, url = start_server(page_file, validators=False, log=log)
        try:
            urls = workdir / "urls.txt"
            urls.write_text("".join(f"{url}?t={i}\n" for i in range(scale.targets)))
            # APScheduler's warnings (skipped runs when it cannot keep up, tracebacks at SIGTERM)
            errors = (workdir / "reference.err").open("w")
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "reference.py"), str(urls),
                 str(workdir / "state.db"), f"{scale.interval:g}", "--events",
                 str(workdir / "events.jsonl")],
                stdout=subprocess.PIPE, stderr=errors, text=True,
            )  # fmt: skip
            started = time.monotonic()
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                raise SetupError("the reference script did not start")
            pid = proc.pid
            time.sleep(max(0.0, started + scale.warm - time.monotonic()))
            figures.checks_u, figures.cpu_ms_u = cpu_window(pid, log, scale.window_u)
            if scale.reference_c:
                figures.checks_c, figures.cpu_ms_c = cpu_window(
                    pid, log, scale.window_c, changing=page_file, interval=scale.interval
                )
            figures.rss_mb, figures.peak_rss_mb = rss_mb(pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            errors.close()
            figures.errors = _skipped(workdir / "reference.err")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return figures


#: how many daemon/reference pairs each scale measures: the goals compare the 100-target ratios,
#: and one pair of 6 s windows moves by ±15 % from run to run on this machine
ROUNDS = {100: 3}


def _ratio(ours: float | None, ref: float | None) -> float | None:
    return None if ours is None or not ref else ours / ref


def run(scales: list[int]) -> dict[str, object]:
    """Each scale's figures: the first pair's whole figures (``daemon``, ``reference``) and, per
    pair, CPU per check and its ratio (``rounds``; the pairs alternate which runs first)."""
    out: dict[str, object] = {}
    for n in scales:
        scale = SCALES[n]
        pairs: list[tuple[Figures, Figures]] = []
        for number in range(ROUNDS.get(n, 1)):
            if number % 2 == 0:
                ours, ref = measure_daemon(scale), measure_reference(scale)
            else:
                ref, ours = measure_reference(scale), measure_daemon(scale)
            pairs.append((ours, ref))
        rounds = [
            {
                "cpu_ms_u": ours.cpu_ms_u,
                "ref_cpu_ms_u": ref.cpu_ms_u,
                "x_ref_u": _ratio(ours.cpu_ms_u, ref.cpu_ms_u),
                "cpu_ms_c": ours.cpu_ms_c,
                "ref_cpu_ms_c": ref.cpu_ms_c,
                "x_ref_c": _ratio(ours.cpu_ms_c, ref.cpu_ms_c),
            }
            for ours, ref in pairs
        ]
        ours, ref = pairs[0]
        out[str(n)] = {
            "daemon": asdict(ours),
            "reference": asdict(ref),
            "scale": asdict(scale),
            "rounds": rounds,
        }
    return out


if __name__ == "__main__":
    scales = [int(a) for a in sys.argv[1:]] or [100]
    print(json.dumps(run(scales), indent=2))
