"""``make bench``: every benchmark in one run, a table, and ``bench/results.json``.

Sections (each module's docstring says how it measures):

* ``parse`` (``bench/parse.py``): per page, against the DOM build of the same page;
* ``pipeline`` (``bench/pipeline.py``): the real daemon at 100, 1,000 and 5,000 targets, and the
  straightforward-stack reference (``bench/reference.py``) measured the same way in the same run;
* ``once`` (``bench/once.py``): ``run --once`` over 100 and 500 pages, next to urlwatch 2.29;
* ``scheduler`` (``bench/scheduler.py``): APScheduler's cost per fire at 100 and 5,000 jobs;
* ``startup`` (``bench/startup.py``): ``check FILE`` and ``--help``;
* ``growth`` (``bench/growth.py``, not in the default sections: ``make bench-growth``): the daemon
  at 100 targets on a fresh state file and on one holding 10 million history rows.

Every figure that has a reference in the same run is also given as a ratio to it, since the
machine is shared and absolute figures swing. Knobs: ``BENCH_SCALES`` (``100,1000,5000``),
``BENCH_ONCE`` (``100,500``), ``BENCH_SECTIONS`` (``parse,pipeline,once,scheduler,startup``),
``BENCH_OUT`` (``bench/results.json``). About 8–9 minutes in all (docs/performance.md).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import growth, once, parse, pipeline, scheduler, startup  # noqa: E402 -- after sys.path

PACKAGES = (
    "httpx", "httpx-aiohttp", "aiohttp", "httpcore", "apscheduler", "structlog", "selectolax",
    "pydantic", "pydantic-settings", "prometheus-client",
)  # fmt: skip


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    except OSError:
        mem = "?"
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_kb": mem,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _fmt(value: float | None, spec: str = "7.2f") -> str:
    return (
        " " * (int(spec.split(".", maxsplit=1)[0]) - 1) + "-"
        if value is None
        else format(value, spec)
    )


def show_parse(data: dict[str, Any]) -> None:
    print("\nparse (ms per call; x DOM = over the DOM build of the same 200 KB page, same run)")
    for label, got in data.items():
        print(
            f"  {label:<46} median {got['median_ms']:7.3f}  p10 {got['p10_ms']:7.3f}  "
            f"p90 {got['p90_ms']:7.3f}  {got['x_dom']:5.2f} x DOM"
        )


def show_pipeline(data: dict[str, Any]) -> None:
    print(
        "\npipeline (the daemon process; CPU ms per check = user+sys / checks the server counted;"
        " x ref = over the reference script, same run)"
    )
    for n, got in data.items():
        d, r = got["daemon"], got["reference"]
        rounds = got.get("rounds", [])
        if len(rounds) > 1:
            for case, label in (("u", "unchanged"), ("c", "changing")):
                xs = [x[f"x_ref_{case}"] for x in rounds if x[f"x_ref_{case}"] is not None]
                if xs:
                    print(
                        f"  {n:>5} targets  {label:<9} {len(xs)} pairs: median"
                        f" {statistics.median(xs):5.2f} x ref (min {min(xs):.2f}, max"
                        f" {max(xs):.2f}); ms {', '.join(_fmt(x[f'cpu_ms_{case}']).strip() for x in rounds)}"
                        f" against {', '.join(_fmt(x[f'ref_cpu_ms_{case}']).strip() for x in rounds)}"
                    )
        print(
            f"  {n:>5} targets  unchanged {_fmt(d['cpu_ms_u'])} ms (ref {_fmt(r['cpu_ms_u'])},"
            f" {_fmt(ratio(d['cpu_ms_u'], r['cpu_ms_u']), '5.2f')} x ref)"
            f"  changing {_fmt(d['cpu_ms_c'])} ms (ref {_fmt(r['cpu_ms_c'])},"
            f" {_fmt(ratio(d['cpu_ms_c'], r['cpu_ms_c']), '5.2f')} x ref)"
        )
        print(
            f"  {'':>13} RSS {d['rss_mb']:6.1f} MB (peak {d['peak_rss_mb']:.1f}; ref"
            f" {r['rss_mb']:.1f})  lateness p50 {_fmt(d['lateness_p50_ms'], '6.1f')} p99"
            f" {_fmt(d['lateness_p99_ms'], '6.1f')} ms  change-to-receiver p50"
            f" {_fmt(d['latency_p50_ms'], '6.1f')} p99 {_fmt(d['latency_p99_ms'], '6.1f')} ms"
            f" ({d['latencies']} changes)  checks {d['checks_u']}+{d['checks_c']}"
            f"  errors {d['errors'] or 'none'}"
        )


def show_once(data: dict[str, Any]) -> None:
    print(f"\nonce (wall s, peak RSS MB; urlwatch: {data.get('urlwatch')})")
    for n, got in data.items():
        if n == "urlwatch":
            continue
        ours = got["ticker-monitor"]
        others = {k: v for k, v in got.items() if k.startswith("urlwatch")}
        for case in ("all_changed", "none_changed"):
            mine = ours[case]
            line = f"  {n:>4} pages {case:<13} ticker-monitor {mine['wall_s']:6.2f} s"
            line += f" {mine['peak_rss_mb']:6.1f} MB"
            for label, theirs in others.items():
                other = theirs[case]
                line += (
                    f" | {label} {other['wall_s']:6.2f} s {other['peak_rss_mb']:6.1f} MB"
                    f" {mine['wall_s'] / other['wall_s']:5.2f} x"
                )
            print(line)
        alerted = f"  {'':>4} alerted pages: ticker-monitor {ours['alerted_pages']}"
        print(alerted + "".join(f", {k} {v['alerted_pages']}" for k, v in others.items()))


def show_scheduler(data: dict[str, Any]) -> None:
    print("\nscheduler (APScheduler alone, 1,000 fires a second, a job that does nothing)")
    for n, got in data.items():
        print(
            f"  {n:>5} jobs  {got['cpu_ms_per_fire']:6.3f} ms CPU per fire  ({got['fires']} fires,"
            f" {got['cpu_share']:.0%} of a core)  lateness p50 {got['lateness_p50_ms']:6.1f}"
            f" p99 {got['lateness_p99_ms']:6.1f} ms"
        )


def show_startup(data: dict[str, Any]) -> None:
    print("\nstartup (wall s, median of 7 new processes)")
    for label, got in data.items():
        print(
            f"  {label:<16} {got['median_s']:6.3f} s  (min {got['min_s']:.3f}, max {got['max_s']:.3f})"
        )


def show_growth(data: dict[str, Any]) -> None:
    fresh, big, x = data["fresh"], data["big"], data["big_over_fresh"]
    rows = big["rows"]
    print(
        f"\ngrowth (the daemon at 100 targets; fresh state file vs {rows['observations']:,}"
        f" observations and {rows['outbox']:,} outbox rows; x = big / fresh, same run)"
    )
    labels = (
        ("cpu_ms_u", "CPU ms per check, unchanged"), ("cpu_ms_c", "CPU ms per check, changing"),
        ("rss_mb", "RSS MB"), ("lateness_p99_ms", "scheduler lateness p99 ms"),
        ("api_status_ms", "/api/status ms (median of 3)"),
        ("expire_history_ms", "housekeeping: expire_history ms"),
        ("outbox_counts_ms", "housekeeping: outbox_counts ms"),
        ("history_7d_rows", "history 7 d, rows"),
        ("history_7d_sql_ms", "history 7 d, SQL ms"),
        ("history_7d_ms", "history 7 d, store ms (what the page read before)"),
        ("sparklines_ms", "status page: sparklines (each target's newest 120) ms"),
        ("outbox_rows_recent_ms", "status page: recent alerts ms"),
        ("outbox_rows_dead_ms", "status page: dead letters ms"),
    )  # fmt: skip
    for key, label in labels:
        print(
            f"  {label:<34} fresh {_fmt(fresh.get(key), '9.2f')}  big {_fmt(big.get(key), '9.2f')}"
            f"  {_fmt(x.get(key), '7.2f')} x"
        )
    print(
        f"  /api/status had its store answers: fresh {fresh['api_status_store_ok']},"
        f" big {big['api_status_store_ok']}; checks {fresh['checks_u']}+{fresh['checks_c']} /"
        f" {big['checks_u']}+{big['checks_c']}; errors {fresh['errors'] or 'none'} /"
        f" {big['errors'] or 'none'}"
    )
    filled = data["fill_seconds"]
    print(
        f"  big file {data['big_file_gb']:.1f} GB"
        + (f", filled in {filled:.0f} s" if filled is not None else ", cached")
    )


def main() -> None:
    sections = os.environ.get("BENCH_SECTIONS", "parse,pipeline,once,scheduler,startup").split(",")
    scales = [int(n) for n in os.environ.get("BENCH_SCALES", "100,1000,5000").split(",") if n]
    sizes = tuple(int(n) for n in os.environ.get("BENCH_ONCE", "100,500").split(",") if n)
    out = Path(os.environ.get("BENCH_OUT", str(ROOT / "bench" / "results.json")))
    results: dict[str, Any] = {"machine": machine()}
    started = time.monotonic()
    print(f"bench: {', '.join(sections)} (Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    if "parse" in sections:
        results["parse"] = parse.run()
        show_parse(results["parse"])
    if "pipeline" in sections:
        results["pipeline"] = pipeline.run(scales)
        show_pipeline(results["pipeline"])
    if "once" in sections:
        results["once"] = once.run(sizes)
        show_once(results["once"])
    if "scheduler" in sections:
        results["scheduler"] = scheduler.run()
        show_scheduler(results["scheduler"])
    if "startup" in sections:
        results["startup"] = startup.run()
        show_startup(results["startup"])
    if "growth" in sections:
        results["growth"] = growth.run()
        show_growth(results["growth"])
    results["seconds"] = time.monotonic() - started
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\n{results['seconds']:.0f} s; figures in {out}")


if __name__ == "__main__":
    main()
