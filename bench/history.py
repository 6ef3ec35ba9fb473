"""What each optimisation of issue 11 bought: the daemon of each step, measured the same way.

Every step's ``monitor/`` package is taken from git (``git archive COMMIT monitor``) into a
temporary directory, and ``bench/pipeline.py`` measures that daemon (``PYTHONPATH`` pointing
there; the bench, page server and receivers are this tree's) at 100 targets every 2 s: CPU ms
per check with the page unchanged and with the ticker changing on every check. The
straightforward-stack reference (``bench/reference.py``) runs first and last, so each figure is
also a ratio to the mean of the two references of the same run. The last step is measured
twice more: with ``log_level=warning`` (the issue asks what info-level logging costs), and with
the file sink alone (the reference writes a file and posts nothing; every step above also posts
each alert to the Slack receiver).

Run: ``.venv/bin/python bench/history.py [--rounds N]`` (about 4.5 minutes a round); figures
printed and written to ``bench/history.json``. Not part of ``make bench`` (it would pass 10
minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import SCALES, Figures, measure_daemon, measure_reference  # noqa: E402

#: (commit, what it added), in the order they were made (``git log ed5855c..``).
STEPS = (
    ("ed5855c", "before issue 11"),
    ("b20ca71", "+ remembered slice, body-hash skip"),
    ("d82bd8f", "+ group commit"),
    ("8cb2f4a", "+ bulk sinks (one write, one fsync)"),
    ("4f04b3a", "+ log level filter first"),
    ("ada28ce", "+ httpx over aiohttp (fetch)"),
    ("4f5d58c", "+ aiohttp for the sinks too"),
    ("1b2496d", "+ body digest first"),
    ("HEAD", "+ one TLS context, /metrics in a thread"),
)


def tree(commit: str, into: Path) -> Path:
    """``monitor/`` as it was at ``commit``, under ``into``."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "monitor"],  # noqa: S607 -- git on PATH
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)  # noqa: S607 -- same
    return into


def figures(got: Figures) -> dict[str, float | None]:
    return {"cpu_ms_u": got.cpu_ms_u, "cpu_ms_c": got.cpu_ms_c, "errors": len(got.errors)}


def run(rounds: int = 1) -> dict[str, object]:
    scale = SCALES[100]
    refs: list[Figures] = [measure_reference(scale)]
    steps: dict[str, list[dict[str, float | None]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        trees = {commit: tree(commit, Path(tmp) / commit) for commit, _ in STEPS}
        for _ in range(rounds):
            for commit, label in STEPS:
                got = measure_daemon(scale, env={"PYTHONPATH": str(trees[commit])})
                steps.setdefault(f"{commit} {label}", []).append(figures(got))
            commit = STEPS[-1][0]
            got = measure_daemon(scale, log_level="warning", env={"PYTHONPATH": str(trees[commit])})
            steps.setdefault(f"{commit} log_level=warning", []).append(figures(got))
            got = measure_daemon(scale, with_slack=False, env={"PYTHONPATH": str(trees[commit])})
            steps.setdefault(f"{commit} file sink only", []).append(figures(got))
    refs.append(measure_reference(scale))
    ref_u = statistics.mean(r.cpu_ms_u for r in refs)
    ref_c = statistics.mean(r.cpu_ms_c or 0.0 for r in refs)
    out: dict[str, object] = {"reference": [asdict(r) for r in refs]}
    for label, runs in steps.items():
        u = statistics.median(r["cpu_ms_u"] or 0.0 for r in runs)
        c = statistics.median(r["cpu_ms_c"] or 0.0 for r in runs)
        out[label] = {"runs": runs, "cpu_ms_u": u, "cpu_ms_c": c, "x_ref_u": u / ref_u,
                      "x_ref_c": c / ref_c}  # fmt: skip
    return out


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=1)
    got = run(args.parse_args().rounds)
    refs = got["reference"]
    assert isinstance(refs, list)  # noqa: S101 -- run() made it
    print("CPU ms per check, 100 targets every 2 s (reference: first and last run)")
    print("  reference " + ", ".join(f"{r['cpu_ms_u']:.2f} / {r['cpu_ms_c']:.2f}" for r in refs))
    for label, step in got.items():
        if isinstance(step, dict):
            print(
                f"  {label:<48} unchanged {step['cpu_ms_u']:5.2f} ({step['x_ref_u']:4.2f} x ref)"
                f"  changing {step['cpu_ms_c']:5.2f} ({step['x_ref_c']:4.2f} x ref)"
            )
    (ROOT / "bench" / "history.json").write_text(json.dumps(got, indent=2) + "\n")


if __name__ == "__main__":
    main()
