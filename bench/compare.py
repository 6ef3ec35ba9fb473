"""The daemons of some commits side by side, measured as ``bench/pipeline.py`` measures one.

``python bench/compare.py [--scale 100|1000|5000] [--rounds N] COMMIT [COMMIT ...]``: each
commit's ``monitor/`` comes from git (``git archive``, as ``bench/history.py`` takes it); ``.``
is the working tree. Each round measures the reference (at 100 and 1,000 targets) and then every
commit in the order given, so a before/after pair shares the machine's state of the moment.
Prints every figure of every run and writes them to ``var/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.history import tree  # noqa: E402 -- after sys.path
from bench.pipeline import SCALES, Figures, measure_daemon, measure_reference  # noqa: E402

SHOWN = (
    "checks_u", "cpu_ms_u", "checks_c", "cpu_ms_c", "rss_mb", "peak_rss_mb",
    "lateness_p99_ms", "latency_p50_ms", "latency_p99_ms", "alerts",
)  # fmt: skip


def line(label: str, got: Figures) -> str:
    values = asdict(got)
    shown = " ".join(
        f"{key}={values[key]:.1f}" if isinstance(values[key], float) else f"{key}={values[key]}"
        for key in SHOWN
    )
    return f"  {label:<10} {shown}" + (f" errors={got.errors}" if got.errors else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=sorted(SCALES), default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("commits", nargs="+")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        trees = {
            c: None if c == "." else tree(c, Path(tmp) / f"tree{i}")
            for i, c in enumerate(args.commits)
        }
        for number in range(1, args.rounds + 1):
            print(f"round {number}, {args.scale} targets", flush=True)
            row: dict[str, object] = {}
            if args.scale <= 1000:
                ref = measure_reference(scale)
                row["reference"] = asdict(ref)
                print(line("reference", ref), flush=True)
            for commit, path in trees.items():
                got = measure_daemon(scale, env=None if path is None else {"PYTHONPATH": str(path)})
                row[commit] = asdict(got)
                print(line(commit, got), flush=True)
            runs.append(row)
    out = ROOT / "var" / "compare.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"scale": args.scale, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
