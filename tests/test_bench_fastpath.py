"""``bench/fastpath.py`` times the slice reader's private parts: it must keep running as the
parser changes (a few calls each, no figure judged: figures belong to the bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_fast_path_breakdown_runs_and_names_every_part() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fastpath.py"), "--calls", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[1:]
    labels = [line.strip() for line in lines]
    for part in ("reread", "read_slice", "_cut", "decode and fill", "assemble"):
        assert any(label.startswith(part) for label in labels), done.stdout
    assert all("x DOM" in line for line in lines)
