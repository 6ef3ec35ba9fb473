"""Memory soak: does the daemon's memory stay flat over thousands of checks?

A page server runs in a separate process (``python -m tests.servers --no-validators``) and serves a
~200 KB ticker page, so every check downloads and parses it; every ``SOAK_CHANGE_EVERY`` rounds the
page's TMT/USD change % flips between two values, so the ticker changes and the whole write path
runs too (events, outbox rows, file-sink deliveries). ``SOAK_TARGETS`` targets (distinct URLs, one
host) are checked concurrently through the daemon's own ``Checker``, then ``deliver_due()`` runs, for
``SOAK_WARMUP`` warm-up rounds and then ``SOAK_ROUNDS`` measured rounds. Every
``SOAK_HOUSEKEEP_EVERY`` rounds the history is expired (with a short retention, so rows really go)
and the outbox gauge refreshed, as the daemon's housekeeping job does.

Every ``SOAK_SAMPLE_EVERY`` rounds, after a ``gc.collect()``, one sample: the process RSS (VmRSS),
the RSS net of tracemalloc's own bookkeeping, the Python heap (tracemalloc's traced memory, tracing
started at the end of the warm-up), open file descriptors and asyncio tasks.

How to read the result:

- ``RSS slope`` is the least-squares slope of net RSS over the second half of the samples, in KB
  per 1000 checks, with what it would mean per day for 100 targets checked every 5 minutes
  (28,800 checks a day). Allocator noise is a few hundred KB either way, so a slope within about
  ±50 KB/1000 checks over a short run is flat; a leak shows as a steady positive slope that stays
  when the run is made longer (``SOAK_ROUNDS``).
- ``heap`` is what Python objects hold: a growth of a few tens of KB is caches and free lists
  settling; a leak grows with the number of checks. The top growth sites (tracemalloc, grouped by
  line, filtered of import machinery) point at the line that allocated what stayed.
- ``fds`` and ``tasks`` must end where they started (a leaked connection or task shows there first).

The run exits non-zero only when the set-up fails (no page server, a baseline round that cannot
read the page); it is a benchmark, not a test.

Run: ``.venv/bin/python bench/soak.py`` (about 60-90 s on two cores). Knobs (environment):
``SOAK_TARGETS`` (100), ``SOAK_ROUNDS`` (40), ``SOAK_WARMUP`` (10), ``SOAK_CHANGE_EVERY`` (2),
``SOAK_HOUSEKEEP_EVERY`` (10), ``SOAK_SAMPLE_EVERY`` (= ``SOAK_CHANGE_EVERY``; keep it a multiple of
it, so that every sample is taken at the same point of the page's cycle), ``SOAK_TRACE_FRAMES`` (1;
more frames also print the full traceback of the biggest growth), ``SOAK_TRACEMALLOC`` (1; 0
measures RSS without the tracer's overhead).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.daemon import Daemon  # noqa: E402 -- after the sys.path line, for a plain checkout
from monitor.logs import configure_logging  # noqa: E402 -- same
from monitor.settings import Settings  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- same

#: the two TMT/USD change % values the page alternates between
CHANGES = ("-0.14", "0.21")
#: history older than this is expired by the soak's housekeeping (seconds; short, so rows go)
RETENTION = 20.0
#: what "per day" means in the verdict: 100 targets every 5 minutes
CHECKS_PER_DAY = 100 * 86400 // 300
#: a second-half RSS slope within this (KB per 1000 checks) counts as flat
FLAT_RSS_SLOPE = 50.0
#: a second-half heap slope within this (KB per 1000 checks) counts as flat
FLAT_HEAP_SLOPE = 10.0
TOP = 5


class SetupError(Exception):
    """The soak could not start: reported on one line, exit status 1."""


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SetupError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SetupError(f"{name}={value} is below {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class Knobs:
    targets: int
    rounds: int
    warmup: int
    change_every: int
    housekeep_every: int
    sample_every: int
    trace_frames: int
    trace: bool

    @classmethod
    def from_env(cls) -> Knobs:
        change_every = env_int("SOAK_CHANGE_EVERY", 2)
        return cls(
            targets=env_int("SOAK_TARGETS", 100),
            rounds=env_int("SOAK_ROUNDS", 40),
            warmup=env_int("SOAK_WARMUP", 10),
            change_every=change_every,
            housekeep_every=env_int("SOAK_HOUSEKEEP_EVERY", 10),
            sample_every=env_int("SOAK_SAMPLE_EVERY", change_every),
            trace_frames=env_int("SOAK_TRACE_FRAMES", 1),
            trace=env_int("SOAK_TRACEMALLOC", 1, minimum=0) > 0,
        )


@dataclass(frozen=True, slots=True)
class Sample:
    round: int
    checks: int
    seconds: float
    rss_kb: int
    #: RSS minus tracemalloc's own bookkeeping
    net_kb: int
    #: tracemalloc's traced memory; None before tracing starts
    heap_kb: int | None
    fds: int
    tasks: int
    events: int
    delivered: int


@dataclass(slots=True)
class Totals:
    checks: int = 0
    events: int = 0
    delivered: int = 0
    expired: int = 0
    failed: int = 0


# --- measurements ----------------------------------------------------------------------------


def proc_status_kb(field: str) -> int:
    """A ``kB`` line of /proc/self/status (``VmRSS``, ``VmHWM``)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise SetupError(f"no {field} in /proc/self/status (Linux only)")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def take_sample(n: int, totals: Totals, started: float) -> Sample:
    gc.collect()
    rss = proc_status_kb("VmRSS")
    tracing = tracemalloc.is_tracing()
    heap = tracemalloc.get_traced_memory()[0] // 1024 if tracing else None
    tracer = tracemalloc.get_tracemalloc_memory() // 1024 if tracing else 0
    return Sample(
        round=n,
        checks=totals.checks,
        seconds=time.perf_counter() - started,
        rss_kb=rss,
        net_kb=rss - tracer,
        heap_kb=heap,
        fds=open_fds(),
        tasks=len(asyncio.all_tasks()),
        events=totals.events,
        delivered=totals.delivered,
    )


def slope_per_1000(points: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of ``(checks, kb)`` points, in KB per 1000 checks."""
    if len(points) < 2:
        return None
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / var * 1000


# --- the page server and the daemon ----------------------------------------------------------


def write_page(path: Path, version: int) -> None:
    quotes = list(SEED_QUOTES)
    pair, rate, _ = quotes[4]
    quotes[4] = (pair, rate, CHANGES[version % len(CHANGES)])
    text = ticker_html(quotes, date_line=SEED_DATE, filler_kb=200)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # the server never reads half a page


def start_server(page: Path) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "tests.servers", "--page", str(page), "--no-validators"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip() if proc.stdout is not None else ""
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        proc.wait(timeout=10)
        raise SetupError(f"the page server did not start (it printed {url!r})")
    return proc, url


def settings_for(url: str, workdir: Path, targets: int) -> Settings:
    return Settings(
        monitor={
            "database": f"sqlite:///{workdir / 'state.db'}",
            "listen": "",
            "max_per_host": 8,
            "max_concurrent_checks": 16,
        },
        targets=[
            {"name": f"t{i}", "url": f"{url}?t={i}", "retries": 0, "max_jump_pct": None}
            for i in range(targets)
        ],
        rules=[{"name": "all", "sinks": ["audit"]}],
        sinks={"audit": {"type": "file", "path": str(workdir / "alerts.jsonl")}},
    )


async def one_round(daemon: Daemon, totals: Totals) -> list[str]:
    """Check every target once, deliver what is due; return the outcomes that were failures."""
    results = await asyncio.gather(*(daemon.checker.check(p) for p in daemon.plans))
    totals.delivered += await daemon.deliverer.deliver_due()
    totals.checks += len(results)
    totals.events += sum(r.events for r in results)
    bad = [r.outcome for r in results if r.outcome not in ("observed", "not_modified")]
    totals.failed += len(bad)
    return bad


async def housekeeping(daemon: Daemon, totals: Totals) -> None:
    """What ``Daemon._housekeeping`` does, with the soak's short retention."""
    cutoff = datetime.now(UTC) - timedelta(seconds=RETENTION)
    totals.expired += await daemon.store.expire_history(cutoff)
    daemon.metrics.set_outbox(await daemon.store.outbox_counts())


# --- the run ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    samples: list[Sample]
    totals: Totals
    #: the sample taken when tracing started (end of the warm-up)
    warm: Sample
    before: tracemalloc.Snapshot | None
    after: tracemalloc.Snapshot | None
    peak_rss_kb: int
    seconds: float


async def soak(knobs: Knobs, workdir: Path) -> Result:
    page = workdir / "page.html"
    write_page(page, 0)
    proc, url = start_server(page)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(settings_for(url, workdir, knobs.targets))
        await daemon.store.open()
        totals = Totals()
        started = time.perf_counter()
        bad = await one_round(daemon, totals)  # the baseline: a silent first observation
        if bad:
            raise SetupError(f"the baseline round failed for {len(bad)} targets: {set(bad)}")
        version = 0
        total_rounds = knobs.warmup + knobs.rounds
        samples: list[Sample] = []
        warm: Sample | None = None
        before: tracemalloc.Snapshot | None = None
        print_header()
        for n in range(1, total_rounds + 1):
            if n % knobs.change_every == 0:
                version += 1
                write_page(page, version)
            await one_round(daemon, totals)
            if n % knobs.housekeep_every == 0:
                await housekeeping(daemon, totals)
            if n == knobs.warmup:
                warm = take_sample(n, totals, started)
                print_sample(warm, "warm-up end")
                if knobs.trace:
                    # the heap baseline is the first sample after this (tracing has seen rounds)
                    tracemalloc.start(knobs.trace_frames)
            elif n > knobs.warmup and (n - knobs.warmup) % knobs.sample_every == 0:
                sample = take_sample(n, totals, started)
                if knobs.trace and before is None:
                    before = tracemalloc.take_snapshot()
                samples.append(sample)
                print_sample(sample)
        if warm is None:
            raise SetupError("no warm-up sample (SOAK_WARMUP must be at least 1)")
        if not samples or samples[-1].round != total_rounds:
            samples.append(take_sample(total_rounds, totals, started))
            print_sample(samples[-1])
        after = tracemalloc.take_snapshot() if knobs.trace else None
        seconds = time.perf_counter() - started
        return Result(
            samples=samples,
            totals=totals,
            warm=warm,
            before=before,
            after=after,
            peak_rss_kb=proc_status_kb("VmHWM"),
            seconds=seconds,
        )
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        if daemon is not None:
            for sink in daemon.sinks.values():
                await sink.aclose()
            await daemon.fetcher.aclose()
            await daemon.store.aclose()
        proc.terminate()
        proc.wait(timeout=10)


# --- the report ------------------------------------------------------------------------------


def print_header() -> None:
    print(
        f"  {'round':>5} {'checks':>7} {'secs':>6} {'RSS KB':>8} {'net KB':>8} {'heap KB':>8}"
        f" {'fds':>4} {'tasks':>5} {'events':>7} {'sent':>7}",
        flush=True,
    )


def print_sample(s: Sample, note: str = "") -> None:
    heap = "-" if s.heap_kb is None else str(s.heap_kb)
    print(
        f"  {s.round:>5} {s.checks:>7} {s.seconds:>6.1f} {s.rss_kb:>8} {s.net_kb:>8} {heap:>8}"
        f" {s.fds:>4} {s.tasks:>5} {s.events:>7} {s.delivered:>7}  {note}".rstrip(),
        flush=True,
    )


def growth_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, frames: int
) -> list[str]:
    ignore = [
        tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),
        tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib._bootstrap>"),
        tracemalloc.Filter(
            inclusive=False, filename_pattern="<frozen importlib._bootstrap_external>"
        ),
        tracemalloc.Filter(inclusive=False, filename_pattern="<unknown>"),
    ]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    lines: list[str] = []
    for stat in after.compare_to(before, "lineno")[:TOP]:
        frame = stat.traceback[0]
        where = short_path(frame.filename)
        lines.append(
            f"    {stat.size_diff / 1024:+9.1f} KB {stat.count_diff:+7d} blocks"
            f"  (now {stat.size / 1024:.1f} KB)  {where}:{frame.lineno}"
        )
    if frames > 1:
        top = after.compare_to(before, "traceback")[:1]
        if top:
            lines.append(f"  biggest growth ({top[0].size_diff / 1024:+.1f} KB), allocated at:")
            lines.extend(f"    {line}" for line in top[0].traceback.format(most_recent_first=True))
    return lines


def short_path(filename: str) -> str:
    for prefix in (str(ROOT) + os.sep, *(p + os.sep for p in sys.path if p)):
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def report(knobs: Knobs, r: Result) -> None:
    first, last, warm = r.samples[0], r.samples[-1], r.warm
    half = r.samples[len(r.samples) // 2 :]
    rss_slope = slope_per_1000([(s.checks, s.net_kb) for s in half])
    heap_slope = slope_per_1000([(s.checks, s.heap_kb) for s in half if s.heap_kb is not None])
    t = r.totals
    measured = last.checks - warm.checks
    print()
    print(
        f"soak: {t.checks} checks in {r.seconds:.0f} s ({measured} after the warm-up),"
        f" {t.events} events, {t.delivered} deliveries, {t.expired} history rows expired,"
        f" {t.failed} failed checks"
    )
    print(
        f"  RSS        warm-up end {warm.rss_kb / 1024:.1f} MB -> end {last.rss_kb / 1024:.1f} MB"
        f" ({(last.rss_kb - warm.rss_kb) / 1024:+.1f} MB); net of tracer"
        f" {warm.net_kb / 1024:.1f} -> {last.net_kb / 1024:.1f} MB"
        f" ({(last.net_kb - warm.net_kb) / 1024:+.1f} MB); peak {r.peak_rss_kb / 1024:.1f} MB"
    )
    if rss_slope is None:
        print("  RSS slope  (too few samples)")
    else:
        per_day = rss_slope * CHECKS_PER_DAY / 1000 / 1024
        print(
            f"  RSS slope  {rss_slope:+.1f} KB per 1000 checks over the second half"
            f" ({len(half)} samples); at 100 targets every 5 min: {per_day:+.2f} MB/day"
        )
    if first.heap_kb is not None and last.heap_kb is not None:
        slope = "n/a" if heap_slope is None else f"{heap_slope:+.1f} KB per 1000 checks"
        print(
            f"  heap       {first.heap_kb} KB -> {last.heap_kb} KB"
            f" ({last.heap_kb - first.heap_kb:+d} KB over {last.checks - first.checks} checks);"
            f" second-half slope {slope}"
        )
    print(f"  fds        {warm.fds} -> {last.fds}    tasks {warm.tasks} -> {last.tasks}")
    if r.before is not None and r.after is not None:
        print(f"  top {TOP} growth sites (tracemalloc, by line, round {first.round} -> end):")
        for line in growth_sites(r.before, r.after, knobs.trace_frames):
            print(line)
    flat = (
        (rss_slope is None or rss_slope <= FLAT_RSS_SLOPE)
        and (heap_slope is None or heap_slope <= FLAT_HEAP_SLOPE)
        and last.fds <= warm.fds
        and last.tasks <= warm.tasks
    )
    verdict = (
        "FLAT: no growth beyond noise"
        if flat
        else "GROWING: see the slope and the growth sites; confirm with a longer run (SOAK_ROUNDS)"
    )
    print(
        f"  verdict    {verdict} (flat = RSS slope <= {FLAT_RSS_SLOPE:g} and heap slope"
        f" <= {FLAT_HEAP_SLOPE:g} KB/1000 checks, fds and tasks not up)"
    )


def main() -> int:
    try:
        knobs = Knobs.from_env()
    except SetupError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    print(
        f"soak: {knobs.targets} targets, {knobs.warmup} warm-up + {knobs.rounds} rounds, ~200 KB"
        f" page, change every {knobs.change_every} rounds, housekeeping every"
        f" {knobs.housekeep_every}, sample every {knobs.sample_every}"
        f" (tracemalloc {'on, ' + str(knobs.trace_frames) + ' frame(s)' if knobs.trace else 'off'})"
    )
    # as in production: info-level JSON logs (written to /dev/null here)
    with (
        Path(os.devnull).open("w", encoding="utf-8") as sink,
        tempfile.TemporaryDirectory(prefix="soak-") as tmp,
    ):
        configure_logging(level=os.environ.get("BENCH_LOG_LEVEL", "info"), fmt="json", stream=sink)
        try:
            result = asyncio.run(soak(knobs, Path(tmp)))
        except SetupError as exc:
            print(f"soak: set-up failed: {exc}", file=sys.stderr)
            return 1
    report(knobs, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
