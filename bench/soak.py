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
#: second-half slopes per 1000 checks at or below these count as flat even when significant:
#: RSS 20 KB (~0.5 MB a day at CHECKS_PER_DAY), heap 5 KB, 20 pymalloc blocks
FLAT_RSS = 20.0
FLAT_HEAP = 5.0
FLAT_BLOCKS = 20.0
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
            warmup=env_int("SOAK_WARMUP", 10, minimum=0),
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
    #: live pymalloc blocks (``sys.getallocatedblocks()``): object count, free with or without tracing
    blocks: int
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
        blocks=sys.getallocatedblocks(),
        fds=open_fds(),
        tasks=len(asyncio.all_tasks()),
        events=totals.events,
        delivered=totals.delivered,
    )


@dataclass(frozen=True, slots=True)
class Slope:
    """A least-squares slope per 1000 checks and its standard error (same unit)."""

    value: float
    stderr: float

    def flat(self, floor: float) -> bool:
        """Below ``floor``, or not told apart from zero (within two standard errors)."""
        return self.value <= floor or self.value <= 2 * self.stderr

    def __str__(self) -> str:
        return f"{self.value:+.1f} ± {self.stderr:.1f}"


def fit(points: list[tuple[int, int]]) -> Slope | None:
    """Least-squares slope of ``(checks, y)`` points, per 1000 checks, with its standard error."""
    n = len(points)
    if n < 3:
        return None
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residuals = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    stderr = (residuals / (n - 2) / sxx) ** 0.5
    return Slope(b * 1000, stderr * 1000)


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
    #: the sample taken at the end of the warm-up, when tracing started
    warm: Sample
    #: the samples after the warm-up; the first is the heap baseline
    samples: list[Sample]
    totals: Totals
    before: tracemalloc.Snapshot | None
    after: tracemalloc.Snapshot | None
    peak_rss_kb: int
    seconds: float


@dataclass(slots=True)
class Cycle:
    """One round of the soak: maybe a new page, every check, delivery, maybe housekeeping."""

    daemon: Daemon
    page: Path
    knobs: Knobs
    totals: Totals
    version: int = 0

    async def round(self, n: int) -> None:
        if n % self.knobs.change_every == 0:
            self.version += 1
            write_page(self.page, self.version)
        await one_round(self.daemon, self.totals)
        if n % self.knobs.housekeep_every == 0:
            await housekeeping(self.daemon, self.totals)


async def measure(daemon: Daemon, page: Path, knobs: Knobs) -> Result:
    totals = Totals()
    started = time.perf_counter()
    bad = await one_round(daemon, totals)  # the baseline: a silent first observation
    if bad:
        raise SetupError(f"the baseline round failed for {len(bad)} targets: {sorted(set(bad))}")
    cycle = Cycle(daemon, page, knobs, totals)
    print_header()
    for n in range(1, knobs.warmup + 1):
        await cycle.round(n)
    warm = take_sample(knobs.warmup, totals, started)
    print_sample(warm, "warm-up end")
    if knobs.trace:
        tracemalloc.start(knobs.trace_frames)
    samples: list[Sample] = []
    before: tracemalloc.Snapshot | None = None
    last = knobs.warmup + knobs.rounds
    for n in range(knobs.warmup + 1, last + 1):
        await cycle.round(n)
        if n % knobs.sample_every == 0 or n == last:
            samples.append(take_sample(n, totals, started))
            # the heap baseline is the first sample, once tracing has seen a few rounds
            print_sample(samples[-1], "heap baseline" if before is None and knobs.trace else "")
            if knobs.trace and before is None:
                before = tracemalloc.take_snapshot()
    after = tracemalloc.take_snapshot() if knobs.trace else None
    return Result(
        warm=warm,
        samples=samples,
        totals=totals,
        before=before,
        after=after,
        peak_rss_kb=proc_status_kb("VmHWM"),
        seconds=time.perf_counter() - started,
    )


async def soak(knobs: Knobs, workdir: Path) -> Result:
    page = workdir / "page.html"
    write_page(page, 0)
    proc, url = start_server(page)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(settings_for(url, workdir, knobs.targets))
        await daemon.store.open()
        return await measure(daemon, page, knobs)
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
        f" {'blocks':>8} {'fds':>4} {'tasks':>5} {'events':>7} {'sent':>7}",
        flush=True,
    )


def print_sample(s: Sample, note: str = "") -> None:
    heap = "-" if s.heap_kb is None else str(s.heap_kb)
    print(
        f"  {s.round:>5} {s.checks:>7} {s.seconds:>6.1f} {s.rss_kb:>8} {s.net_kb:>8} {heap:>8}"
        f" {s.blocks:>8} {s.fds:>4} {s.tasks:>5} {s.events:>7} {s.delivered:>7}  {note}".rstrip(),
        flush=True,
    )


_NOT_OURS = (
    tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),
    tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib._bootstrap>"),
    tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(inclusive=False, filename_pattern="<unknown>"),
)


def growth_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, frames: int
) -> list[str]:
    """The ``TOP`` lines whose live allocations grew most (and, with frames, the biggest's stack)."""
    before, after = before.filter_traces(_NOT_OURS), after.filter_traces(_NOT_OURS)
    grown = [d for d in after.compare_to(before, "lineno") if d.size_diff > 0]
    grown.sort(key=lambda d: d.size_diff, reverse=True)
    lines: list[str] = []
    for stat in grown[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"    {stat.size_diff / 1024:+8.1f} KB {stat.count_diff:+7d} blocks"
            f"  (now {stat.size / 1024:7.1f} KB)  {short_path(frame.filename)}:{frame.lineno}"
        )
    if frames > 1:
        stacks = [d for d in after.compare_to(before, "traceback") if d.size_diff > 0]
        if stacks:
            top = max(stacks, key=lambda d: d.size_diff)
            lines.append(f"    the biggest ({top.size_diff / 1024:+.1f} KB) was allocated at:")
            lines.extend(f"      {line}" for line in top.traceback.format(most_recent_first=True))
    return lines


def short_path(filename: str) -> str:
    for prefix in sorted({str(ROOT), *(p for p in sys.path if p)}, key=len, reverse=True):
        if filename.startswith(prefix + os.sep):
            return filename[len(prefix) + 1 :]
    return filename


def report(knobs: Knobs, r: Result) -> None:
    warm, first, last = r.warm, r.samples[0], r.samples[-1]
    half = r.samples[len(r.samples) // 2 :]
    rss = fit([(s.checks, s.net_kb) for s in half])
    blocks = fit([(s.checks, s.blocks) for s in half])
    heap = fit([(s.checks, s.heap_kb) for s in half if s.heap_kb is not None])
    t = r.totals
    print()
    print(
        f"soak: {t.checks} checks in {r.seconds:.0f} s ({last.checks - warm.checks} after the"
        f" warm-up), {t.events} events, {t.delivered} deliveries, {t.expired} history rows"
        f" expired, {t.failed} failed checks; second half = {len(half)} samples,"
        f" {half[-1].checks - half[0].checks} checks"
    )
    print(
        f"  RSS        warm-up end {warm.rss_kb / 1024:.1f} MB -> end {last.rss_kb / 1024:.1f} MB"
        f" ({(last.rss_kb - warm.rss_kb) / 1024:+.1f}); net of tracemalloc's own"
        f" {warm.net_kb / 1024:.1f} -> {last.net_kb / 1024:.1f} MB"
        f" ({(last.net_kb - warm.net_kb) / 1024:+.1f}); peak {r.peak_rss_kb / 1024:.1f} MB"
    )
    if rss is not None:
        per_day = rss.value * CHECKS_PER_DAY / 1000 / 1024
        print(
            f"  RSS slope  {rss} KB per 1000 checks (net RSS, second half);"
            f" at 100 targets every 5 min that is {per_day:+.2f} MB/day"
        )
    if blocks is not None:
        print(
            f"  blocks     {warm.blocks} -> {last.blocks} ({last.blocks - warm.blocks:+d});"
            f" second-half slope {blocks} per 1000 checks"
        )
    if heap is not None and first.heap_kb is not None and last.heap_kb is not None:
        print(
            f"  heap       {first.heap_kb} KB (round {first.round}) -> {last.heap_kb} KB"
            f" ({last.heap_kb - first.heap_kb:+d} KB); second-half slope {heap} KB per 1000 checks"
        )
    print(f"  fds        {warm.fds} -> {last.fds}    tasks {warm.tasks} -> {last.tasks}")
    if r.before is not None and r.after is not None:
        print(f"  top {TOP} growth sites (tracemalloc by line, round {first.round} -> end):")
        for line in growth_sites(r.before, r.after, knobs.trace_frames):
            print(line)
    flat = (
        (rss is None or rss.flat(FLAT_RSS))
        and (blocks is None or blocks.flat(FLAT_BLOCKS))
        and (heap is None or heap.flat(FLAT_HEAP))
        and last.fds <= warm.fds
        and last.tasks <= warm.tasks
    )
    print(
        "  verdict    "
        + (
            "FLAT: no growth told apart from noise"
            if flat
            else "GROWING: see the slopes and growth sites; confirm with a longer SOAK_ROUNDS"
        )
    )
    print(
        f"             (flat: each second-half slope within 2 standard errors of zero or below"
        f" {FLAT_RSS:g} KB RSS / {FLAT_HEAP:g} KB heap / {FLAT_BLOCKS:g} blocks per 1000 checks;"
        f" fds and tasks not up)"
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
