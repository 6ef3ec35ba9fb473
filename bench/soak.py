"""Memory soak: does the daemon's memory stay flat over thousands of checks?

A page server runs in a separate process (``python -m tests.servers --no-validators``) and serves a
~200 KB ticker page, so every check downloads and parses it; every ``SOAK_CHANGE_EVERY`` rounds the
page's TMT/USD change % flips between two values, so the ticker changes and the whole write path
runs too (events, outbox rows, file-sink deliveries). A round checks ``SOAK_TARGETS`` targets
(distinct URLs, one host) concurrently through the daemon's own ``Checker``, then runs
``deliver_due()``; every ``SOAK_HOUSEKEEP_EVERY`` rounds the history is expired (with a short
retention, so that rows really go) and the outbox gauge refreshed, as the daemon's housekeeping
job does. ``SOAK_WARMUP`` warm-up rounds (long enough for SQLite's page cache to fill) come before
``SOAK_ROUNDS`` measured ones; tracemalloc is started at the end of the warm-up.

A sample, after a ``gc.collect()``, holds: the process RSS (VmRSS); ``net``, the RSS without
tracemalloc's own bookkeeping; ``heap``, the memory of the Python objects allocated since tracing
started and still alive; ``blocks``, every live pymalloc block (``sys.getallocatedblocks()``, an
object count that needs no tracing); ``sqlite``, SQLite's own memory (``sqlite3_memory_used``,
its page cache mostly); ``malloc``, the bytes in use in the C allocator (glibc ``mallinfo2``:
SQLite, the HTML parser, page bodies and other large objects); open file descriptors; asyncio
tasks. One is taken every ``SOAK_SAMPLE_EVERY`` rounds (every 10 in the warm-up, for the table).

How to read the result:

- The slopes are least-squares fits over the second half of the measured samples, per 1000
  checks, ``± one standard error``. A slope within two standard errors of zero cannot be told
  apart from noise. The RSS moves in steps of a few hundred KB as the allocator takes and gives
  back room, so a short run has a wide error: make ``SOAK_ROUNDS`` larger to narrow it. The RSS
  slope is also shown per day for 100 targets checked every 5 minutes (28,800 checks a day).
- ``heap`` and ``blocks`` rise a little after tracing starts (free lists refill, a cache takes a
  new entry, a gauge gets a new value object): that settles. A leak keeps growing with the checks.
  ``blocks`` saw-tooths by a few hundred: sqlite3 keeps a weak reference per cursor and prunes the
  dead ones every 200 cursors.
- The top growth sites compare tracemalloc snapshots at the start of the second half and at the
  end, grouped by the line that allocated what stayed (``SOAK_TRACE_FRAMES`` > 1 also prints the
  full stack of the biggest one).
- ``fds`` and ``tasks`` must not end above where they started (a leaked connection or task shows
  there first).

The verdict says FLAT when every slope is within two standard errors of zero or below a small
floor, and fds and tasks did not go up. The run exits non-zero only when the set-up fails (no page
server, a baseline round that cannot read the page): it is a benchmark, not a test.

Run: ``.venv/bin/python bench/soak.py`` (about 80 s on two cores; tracemalloc makes a measured
round about three times as slow as a warm-up round). Knobs (environment): ``SOAK_TARGETS`` (100),
``SOAK_ROUNDS`` (22), ``SOAK_WARMUP`` (30), ``SOAK_CHANGE_EVERY`` (2), ``SOAK_HOUSEKEEP_EVERY``
(10), ``SOAK_SAMPLE_EVERY`` (``SOAK_CHANGE_EVERY``; keep it a multiple of it, so that every sample
is taken at the same point of the page's cycle), ``SOAK_TRACE_FRAMES`` (1), ``SOAK_TRACEMALLOC``
(1; 0 turns tracing off, for RSS without its overhead and rounds three times as fast).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import SetupError, settings_for, start_server  # noqa: E402 -- same
from monitor.app import build_app  # noqa: E402 -- same
from monitor.daemon import Daemon  # noqa: E402 -- after the sys.path line, for a plain checkout
from monitor.logs import configure_logging  # noqa: E402 -- same
from tests.pages import SEED_DATE, SEED_QUOTES, ticker_html  # noqa: E402 -- same

#: the two TMT/USD change % values the page alternates between
CHANGES = ("-0.14", "0.21")
#: history older than this is expired by the soak's housekeeping (seconds; short, so rows go)
RETENTION = 20.0
#: what "per day" means in the verdict: 100 targets every 5 minutes
CHECKS_PER_DAY = 100 * 86400 // 300
#: a sample every this many warm-up rounds (shown, not fitted)
WARMUP_SAMPLE_EVERY = 10
#: second-half slopes per 1000 checks at or below these count as flat even when significant:
#: RSS 20 KB (~0.5 MB a day at CHECKS_PER_DAY), heap 5 KB, 100 pymalloc blocks (free lists
#: filling up creep by a few tens; one leaked object per check would be 1000 or more)
FLAT_RSS = 20.0
FLAT_HEAP = 5.0
FLAT_BLOCKS = 100.0
TOP = 5


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
            rounds=env_int("SOAK_ROUNDS", 22),
            warmup=env_int("SOAK_WARMUP", 30, minimum=0),
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
    #: tracemalloc's traced memory; None when not tracing
    heap_kb: int | None
    #: live pymalloc blocks: an object count, free with or without tracing
    blocks: int
    #: ``sqlite3_memory_used()``; None when it cannot be reached
    sqlite_kb: int | None
    #: bytes in use in glibc's malloc (arenas and mmapped chunks) but tracemalloc's own; None
    #: when not glibc
    malloc_kb: int | None
    fds: int
    tasks: int
    delivered: int


@dataclass(slots=True)
class Totals:
    checks: int = 0
    events: int = 0
    delivered: int = 0
    expired: int = 0
    failed: int = 0


# --- measurements ----------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    )


def sqlite_probe() -> Callable[[], int] | None:
    """``sqlite3_memory_used`` of the SQLite library the sqlite3 module uses, or None."""
    try:
        module = importlib.import_module("_sqlite3")
        used = ctypes.CDLL(module.__file__).sqlite3_memory_used
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    used.restype = ctypes.c_int64
    used.argtypes = []
    return lambda: int(used())


def malloc_probe() -> Callable[[], int] | None:
    """Bytes in use in glibc's malloc (``mallinfo2``: uordblks + hblkhd), or None."""
    try:
        info = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    info.restype = _MallInfo2
    info.argtypes = []

    def in_use() -> int:
        m = info()
        return int(m.uordblks + m.hblkhd)

    return in_use


def proc_status_kb(field: str) -> int:
    """A ``kB`` line of /proc/self/status (``VmRSS``, ``VmHWM``)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise SetupError(f"no {field} in /proc/self/status (Linux only)")


@dataclass(slots=True)
class Meter:
    totals: Totals
    started: float
    sqlite: Callable[[], int] | None
    malloc: Callable[[], int] | None

    @classmethod
    def start(cls, totals: Totals) -> Meter:
        return cls(totals, time.perf_counter(), sqlite_probe(), malloc_probe())

    def sample(self, n: int) -> Sample:
        gc.collect()
        rss = proc_status_kb("VmRSS")
        tracing = tracemalloc.is_tracing()
        tracer = tracemalloc.get_tracemalloc_memory() // 1024 if tracing else 0
        return Sample(
            round=n,
            checks=self.totals.checks,
            seconds=time.perf_counter() - self.started,
            rss_kb=rss,
            net_kb=rss - tracer,
            heap_kb=tracemalloc.get_traced_memory()[0] // 1024 if tracing else None,
            blocks=sys.getallocatedblocks(),
            sqlite_kb=None if self.sqlite is None else self.sqlite() // 1024,
            # tracemalloc's own tables are malloc'ed: left out, as from ``net``
            malloc_kb=None if self.malloc is None else self.malloc() // 1024 - tracer,
            fds=len(os.listdir("/proc/self/fd")),
            tasks=len(asyncio.all_tasks()),
            delivered=self.totals.delivered,
        )


@dataclass(frozen=True, slots=True)
class Slope:
    """A least-squares slope per 1000 checks and its standard error (same unit)."""

    value: float
    stderr: float

    def flat(self, floor: float) -> bool:
        """Below ``floor``, or not told apart from zero (within two standard errors)."""
        return self.value <= floor or self.value <= 2 * self.stderr

    @property
    def significant(self) -> bool:
        """More than two standard errors away from zero, either way."""
        return abs(self.value) > 2 * self.stderr

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
    #: after the baseline round, then during the warm-up (shown, not fitted)
    warmup: list[Sample]
    #: at the end of the warm-up, when tracing started
    warm: Sample
    #: the samples after the warm-up; the slopes are fitted on their second half
    samples: list[Sample]
    totals: Totals
    #: the heap at the start of the second half, and at the end
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


def snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot()


async def measure(daemon: Daemon, page: Path, knobs: Knobs) -> Result:
    totals = Totals()
    meter = Meter.start(totals)
    bad = await one_round(daemon, totals)  # the baseline: a silent first observation
    if bad:
        raise SetupError(f"the baseline round failed for {len(bad)} targets: {sorted(set(bad))}")
    cycle = Cycle(daemon, page, knobs, totals)
    print_header()
    warmup = [meter.sample(0)]
    print_sample(warmup[0], "baseline round")
    for n in range(1, knobs.warmup + 1):
        await cycle.round(n)
        if n % WARMUP_SAMPLE_EVERY == 0 and n < knobs.warmup:
            warmup.append(meter.sample(n))
            print_sample(warmup[-1], "warm-up")
    warm = meter.sample(knobs.warmup)
    print_sample(warm, "warm-up end, tracing starts" if knobs.trace else "warm-up end")
    if knobs.trace:
        tracemalloc.start(knobs.trace_frames)
    last = knobs.warmup + knobs.rounds
    due = [n for n in range(knobs.warmup + 1, last + 1) if n % knobs.sample_every == 0]
    due += [] if due and due[-1] == last else [last]
    # The growth sites compare the heap at the start of the second half with the end, so that
    # objects merely replaced once since tracing started (a gauge's new value, a refilled free
    # list) do not pose as growth. The snapshot is taken before that sample, so that the memory
    # it holds is in every sample of the second half.
    middle = due[len(due) // 2]
    samples: list[Sample] = []
    before: tracemalloc.Snapshot | None = None
    for n in range(knobs.warmup + 1, last + 1):
        await cycle.round(n)
        if n in due:
            if knobs.trace and n == middle:
                before = snapshot()
            samples.append(meter.sample(n))
            print_sample(samples[-1], "second half" if n == middle else "")
    after = snapshot() if knobs.trace else None
    return Result(
        warmup=warmup,
        warm=warm,
        samples=samples,
        totals=totals,
        before=before,
        after=after,
        peak_rss_kb=proc_status_kb("VmHWM"),
        seconds=time.perf_counter() - meter.started,
    )


async def soak(knobs: Knobs, workdir: Path) -> Result:
    page = workdir / "page.html"
    write_page(page, 0)
    proc, url = start_server(page, validators=False)
    daemon: Daemon | None = None
    try:
        daemon = Daemon(await build_app(settings_for(url, workdir, knobs.targets)))
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


def _kb(value: int | None) -> str:
    return "-" if value is None else str(value)


def print_header() -> None:
    print(
        f"  {'round':>5} {'checks':>6} {'secs':>5} {'RSS KB':>7} {'net KB':>7} {'heap KB':>7}"
        f" {'blocks':>7} {'sqlite KB':>9} {'malloc KB':>9} {'fds':>3} {'tasks':>5} {'sent':>5}",
        flush=True,
    )


def print_sample(s: Sample, note: str = "") -> None:
    print(
        f"  {s.round:>5} {s.checks:>6} {s.seconds:>5.0f} {s.rss_kb:>7} {s.net_kb:>7}"
        f" {_kb(s.heap_kb):>7} {s.blocks:>7} {_kb(s.sqlite_kb):>9} {_kb(s.malloc_kb):>9}"
        f" {s.fds:>3} {s.tasks:>5} {s.delivered:>5}  {note}".rstrip(),
        flush=True,
    )


_NOT_THE_DAEMON = (
    tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),
    tracemalloc.Filter(inclusive=False, filename_pattern=__file__),  # the soak's own samples
    tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib._bootstrap>"),
    tracemalloc.Filter(inclusive=False, filename_pattern="<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(inclusive=False, filename_pattern="<unknown>"),
)


def growth_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, frames: int
) -> list[str]:
    """The ``TOP`` lines whose live allocations grew most (and, with frames, the biggest's stack)."""
    before, after = before.filter_traces(_NOT_THE_DAEMON), after.filter_traces(_NOT_THE_DAEMON)
    grown = [d for d in after.compare_to(before, "lineno") if d.size_diff > 0]
    grown.sort(key=lambda d: d.size_diff, reverse=True)
    lines: list[str] = []
    for stat in grown[:TOP]:
        frame = stat.traceback[0]
        lines.append(
            f"    {stat.size_diff / 1024:+7.1f} KB {stat.count_diff:+6d} blocks"
            f"  (now {stat.size / 1024:6.1f} KB)  {short_path(frame.filename)}:{frame.lineno}"
        )
    if not grown:
        lines.append("    (nothing grew)")
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


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def _change(start: int | None, end: int | None, unit: str = " KB") -> str:
    if start is None or end is None:
        return "n/a"
    return f"{start}{unit} -> {end}{unit} ({end - start:+d})"


def report(knobs: Knobs, r: Result) -> None:
    base, warm, last = r.warmup[0], r.warm, r.samples[-1]
    half = r.samples[len(r.samples) // 2 :]
    mid = half[0]
    rss = fit([(s.checks, s.net_kb) for s in half])
    blocks = fit([(s.checks, s.blocks) for s in half])
    heap = fit([(s.checks, s.heap_kb) for s in half if s.heap_kb is not None])
    malloc = fit([(s.checks, s.malloc_kb) for s in half if s.malloc_kb is not None])
    t = r.totals
    print()
    print(
        f"soak: {t.checks} checks in {r.seconds:.0f} s, {last.checks - warm.checks} of them after"
        f" the warm-up; {t.events} events, {t.delivered} deliveries, {t.expired} history rows"
        f" expired, {t.failed} failed checks. Second half: {len(half)} samples,"
        f" {last.checks - mid.checks} checks (rounds {mid.round}-{last.round})."
    )
    print(
        f"  RSS        after baseline {_mb(base.rss_kb)} MB, warm-up end {_mb(warm.rss_kb)} MB,"
        f" end {_mb(last.rss_kb)} MB ({(last.rss_kb - warm.rss_kb) / 1024:+.1f} since the"
        f" warm-up); net of tracemalloc {_mb(warm.net_kb)} -> {_mb(last.net_kb)} MB"
        f" ({(last.net_kb - warm.net_kb) / 1024:+.1f}); peak {_mb(r.peak_rss_kb)} MB"
    )
    if rss is not None:
        per_day = rss.value * CHECKS_PER_DAY / 1000 / 1024
        significant = "" if rss.significant else "not told apart from zero; "
        print(
            f"  RSS slope  {rss} KB per 1000 checks (net, second half; {significant}as if"
            f" 100 targets every 5 min: {per_day:+.2f} MB/day)"
        )
    if heap is not None:
        print(
            f"  heap       {_kb(r.samples[0].heap_kb)} KB (round {r.samples[0].round}) ->"
            f" {_kb(mid.heap_kb)} KB (round {mid.round}) -> {_kb(last.heap_kb)} KB (end);"
            f" slope {heap} KB per 1000 checks"
        )
    if blocks is not None:
        # the "before" snapshot itself adds a few thousand blocks from the second half on
        held = ", with the snapshot" if r.before is not None else ""
        print(
            f"  blocks     {warm.blocks} (warm-up end) -> {mid.blocks} (round {mid.round}{held})"
            f" -> {last.blocks} (end); slope {blocks} per 1000 checks"
        )
    print(
        f"  sqlite     {_change(base.sqlite_kb, warm.sqlite_kb)} in the warm-up,"
        f" {_change(warm.sqlite_kb, last.sqlite_kb)} after"
    )
    if malloc is not None:
        print(
            f"  malloc     {_change(warm.malloc_kb, last.malloc_kb)} since the warm-up;"
            f" slope {malloc} KB per 1000 checks"
        )
    print(f"  fds        {warm.fds} -> {last.fds};  tasks {warm.tasks} -> {last.tasks}")
    if r.before is not None and r.after is not None:
        print(f"  top {TOP} growth sites (tracemalloc by line, round {mid.round} -> end):")
        for line in growth_sites(r.before, r.after, knobs.trace_frames):
            print(line)
    flat = (
        (rss is None or rss.flat(FLAT_RSS))
        and (blocks is None or blocks.flat(FLAT_BLOCKS))
        and (heap is None or heap.flat(FLAT_HEAP))
        and last.fds <= warm.fds
        and last.tasks <= warm.tasks
    )
    verdict = (
        "FLAT: no growth told apart from noise"
        if flat
        else "GROWING: see the slopes and the growth sites; confirm with a larger SOAK_ROUNDS"
    )
    print(f"  verdict    {verdict}")
    print(
        f"             (flat: the RSS, heap and blocks slopes each within two standard errors of"
        f" zero or at most {FLAT_RSS:g} KB / {FLAT_HEAP:g} KB / {FLAT_BLOCKS:g} per 1000 checks;"
        f" fds and tasks not up)"
    )


def main() -> int:
    try:
        knobs = Knobs.from_env()
    except SetupError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 1
    tracing = f"on, {knobs.trace_frames} frame(s)" if knobs.trace else "off"
    print(
        f"soak: {knobs.targets} targets, {knobs.warmup} warm-up + {knobs.rounds} measured rounds,"
        f" ~200 KB page changing every {knobs.change_every} rounds, housekeeping every"
        f" {knobs.housekeep_every}, a sample every {knobs.sample_every}, tracemalloc {tracing}"
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
