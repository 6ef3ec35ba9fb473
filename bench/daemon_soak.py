"""The daemon soak: the real daemon process, 50 targets every second, a flaky Slack, 10 minutes.

A page server in its own process (``python -m tests.servers --no-validators``) serves one marquee at
``?t=0`` ... ``?t=49``; every ``SOAK_CHANGE_EVERY`` seconds the page's TMT/USD rate moves one step,
so every target sees every change. The daemon (``python -m monitor run``, info-level JSON logs to a
file) checks each target every second and delivers each change to a file sink and to a Slack
stand-in that answers 10% of posts with a 503 (``SOAK_FLAKY``). At the end the page stops
changing, the outbox drains, the daemon gets SIGTERM.

Reported: the daemon's RSS (VmRSS) after the warm-up (``SOAK_WARMUP`` seconds) and at the end,
checks and changes detected (its own metrics), rows delivered per sink, duplicates per sink (an
event that reached a sink twice: 0 without kills), and the outcome of the Slack stand-in's posts.
PASS when the RSS grew less than 10 MB, every committed row was delivered, and nothing was
duplicated; the exit code says the same (0 / 1).

Run: ``make soak`` (``SOAK_SECONDS=600``; ``SOAK_TARGETS=50``; ``SOAK_INTERVAL=1s``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import SetupError, start_server, write_atomically  # noqa: E402 -- same
from tests.daemon_harness import DaemonProcess, free_port  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- after sys.path
from tests.servers import Reply, Request, ThreadedPageServer  # noqa: E402 -- same

SLACK_PATH = "/services/T0SOAK/B0SOAK/soak-token"
BODY = "soak $target $pair $old_rate to $new_rate id $dedup_id"
LINE = re.compile(r"soak (\S+) (\S+) (\S+) to (\S+) id ([0-9a-f]{8})")
#: the verdict's limit on RSS growth after the warm-up
MAX_GROWTH_MB = 10.0


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise SetupError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Knobs:
    seconds: float = field(default_factory=lambda: env_number("SOAK_SECONDS", 600))
    warmup: float = field(default_factory=lambda: env_number("SOAK_WARMUP", 30))
    targets: int = field(default_factory=lambda: int(env_number("SOAK_TARGETS", 50)))
    interval: str = os.environ.get("SOAK_INTERVAL", "1s")
    change_every: float = field(default_factory=lambda: env_number("SOAK_CHANGE_EVERY", 5))
    flaky: float = field(default_factory=lambda: env_number("SOAK_FLAKY", 0.1))


def page(step: int) -> str:
    quotes = [
        (p, f"{0.28575 + step / 100000:.5f}" if p == "TMT/USD" else r, c) for p, r, c in SEED_QUOTES
    ]
    return ticker_html(quotes, date_line=SEED_DATE, filler_kb=20)


def config(workdir: Path, url: str, slack: str, port: int, knobs: Knobs) -> Path:
    targets = "".join(
        f'[[targets]]\nname = "t{i}"\nurl = "{url}?t={i}"\ninterval = "{knobs.interval}"\n'
        "retries = 0\n\n"
        for i in range(knobs.targets)
    )
    text = f"""
[monitor]
database = "sqlite:///{workdir / "state.db"}"
log_format = "json"
listen = "127.0.0.1:{port}"
max_per_host = 8
max_concurrent_checks = 16

[delivery]
backoff_initial = "500ms"
backoff_max = "5s"

{targets}
[[rules]]
name = "all"
sinks = ["audit", "slack"]

[sinks.audit]
type = "file"
path = "{workdir / "audit.jsonl"}"
body_template = "{BODY}"

[sinks.slack]
type = "slack"
webhook_url = "{slack}"
body_template = "{BODY}"
"""
    path = workdir / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


class FlakySlack:
    """Answers ``flaky`` of the posts with a 503, the rest with Slack's "ok"; keeps the accepted."""

    def __init__(self, flaky: float) -> None:
        self.flaky = flaky
        self.rng = random.Random(7)
        self.accepted: list[bytes] = []
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        with self.lock:
            if self.rng.random() < self.flaky:
                self.refused += 1
                return Reply(503, body=b"service_unavailable")
            self.accepted.append(request.body)
        return Reply(200, body=b"ok")

    def events(self) -> list[tuple[str, ...]]:
        out = []
        for body in self.accepted:
            for block in json.loads(body)["blocks"]:
                if block["type"] == "section":
                    out += [m.groups()[:4] for m in LINE.finditer(block["text"]["text"])]
        return out


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SetupError("no VmRSS (Linux only)")


def metric_sum(text: str, name: str) -> int:
    return int(sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return str(resp.read().decode())


def rows(db: Path) -> Counter[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return Counter(
            {
                (s, st): n
                for s, st, n in conn.execute(
                    "SELECT sink, status, count(*) FROM outbox GROUP BY 1, 2"
                )
            }
        )
    finally:
        conn.close()


def file_events(path: Path) -> list[tuple[str, ...]]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = LINE.search(json.loads(raw)["message"])
        if m:
            out.append(m.groups()[:4])
    return out


def duplicates(events: list[tuple[str, ...]]) -> int:
    return sum(n - 1 for n in Counter(events).values() if n > 1)


@dataclass
class Result:
    steps: int = 0
    started: float = 0.0
    #: (monotonic time, RSS KB) every 10 s
    samples: list[tuple[float, int]] = field(default_factory=list)
    warm: tuple[float, int] | None = None
    end_rss: int = 0
    metrics: str = ""
    code: int | None = None
    problems: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    slack_events: list[tuple[str, ...]] = field(default_factory=list)
    file_events: list[tuple[str, ...]] = field(default_factory=list)
    slack_accepted: int = 0
    slack_refused: int = 0


def drive(daemon: DaemonProcess, page_file: Path, knobs: Knobs, r: Result) -> None:
    """Move the page every ``change_every`` seconds for ``seconds``; sample the RSS."""
    pid = daemon.proc.pid
    r.started = time.monotonic()
    next_change = r.started + knobs.change_every
    while (now := time.monotonic()) < r.started + knobs.seconds:
        if now >= next_change:
            r.steps += 1
            write_atomically(page_file, page(r.steps))
            next_change += knobs.change_every
        if not r.samples or now - r.samples[-1][0] >= 10:
            r.samples.append((now, rss_kb(pid)))
            if r.warm is None and now - r.started >= knobs.warmup:
                r.warm = r.samples[-1]
            print(
                f"  {now - r.started:5.0f} s  RSS {r.samples[-1][1] / 1024:6.1f} MB"
                f"  page step {r.steps}",
                flush=True,
            )
        if daemon.proc.poll() is not None:
            raise SetupError(f"the daemon died: see {daemon.log_path}")
        time.sleep(0.2)
    r.end_rss = rss_kb(pid)


def run(knobs: Knobs, workdir: Path) -> Result:
    page_file = workdir / "page.html"
    write_atomically(page_file, page(0))
    server, url = start_server(page_file, validators=False)
    slack = FlakySlack(knobs.flaky)
    port = free_port()
    r = Result()
    db = workdir / "state.db"
    try:
        with ThreadedPageServer("ok") as receiver:
            receiver.route(SLACK_PATH, slack)
            cfg = config(workdir, url, receiver.url_for(SLACK_PATH), port, knobs)
            with DaemonProcess(cfg) as daemon:
                if not daemon.wait_log("daemon_started", timeout=60):
                    raise SetupError("the daemon did not start: see " + str(daemon.log_path))
                drive(daemon, page_file, knobs, r)
                # the page stops changing; what was committed drains
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and any(
                    n for (_, status), n in rows(db).items() if status == "pending"
                ):
                    time.sleep(0.5)
                r.metrics = scrape(port)
                daemon.proc.send_signal(signal.SIGTERM)
                r.code = daemon.proc.wait(timeout=60)
                r.problems = sum(
                    1 for e in daemon.logs() if "exception" in e or e.get("level") == "error"
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    r.counts = rows(db)
    r.slack_events, r.file_events = slack.events(), file_events(workdir / "audit.jsonl")
    r.slack_accepted, r.slack_refused = len(slack.accepted), slack.refused
    return r


def report(knobs: Knobs, r: Result) -> bool:
    """Print the figures; True when the soak passed."""
    checks = metric_sum(r.metrics, "ticker_monitor_checks_total")
    changes = metric_sum(r.metrics, "ticker_monitor_events_total")
    base = r.warm or r.samples[0]
    growth = (r.end_rss - base[1]) / 1024
    seconds = knobs.seconds
    print()
    print(
        f"soak: {knobs.targets} targets every {knobs.interval} for {seconds:.0f} s, the page"
        f" changing every {knobs.change_every:g} s ({r.steps} changes), Slack refusing"
        f" {knobs.flaky:.0%} of posts"
    )
    print(
        f"  RSS        {r.samples[0][1] / 1024:.1f} MB at start, {base[1] / 1024:.1f} MB after"
        f" the {base[0] - r.started:.0f} s warm-up, {r.end_rss / 1024:.1f} MB at the end"
        f" ({growth:+.1f} MB; limit {MAX_GROWTH_MB:g})"
    )
    print(f"  checks     {checks} ({checks / seconds / knobs.targets:.2f} per target per second)")
    print(f"  changes    {changes} detected ({knobs.targets} targets x {r.steps} page changes)")
    delivered = True
    for sink, got in (("audit", r.file_events), ("slack", r.slack_events)):
        sent, pending, dead = (r.counts[(sink, st)] for st in ("sent", "pending", "dead"))
        print(
            f"  {sink:<10} {sent} sent, {pending} pending, {dead} dead; received"
            f" {len(set(got))} distinct, {duplicates(got)} duplicates"
        )
        delivered &= pending == dead == duplicates(got) == 0 and len(set(got)) == sent == changes
    print(f"  slack      {r.slack_accepted} posts accepted, {r.slack_refused} refused (503)")
    print(f"  exit       {r.code}; {r.problems} error or traceback lines in the log")
    ok = growth < MAX_GROWTH_MB and delivered and r.code == 0 and not r.problems
    print(f"  verdict    {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    try:
        knobs = Knobs()
        with tempfile.TemporaryDirectory(prefix="daemon-soak-") as tmp:
            return 0 if report(knobs, run(knobs, Path(tmp))) else 1
    except SetupError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
