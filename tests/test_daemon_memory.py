"""The daemon's malloc setting (``monitor.heap.fix_mmap_threshold``): a big buffer freed goes
back to the system, after another one too -- glibc's own default keeps it on the heap after the
first (docs/performance.md, 5,000 targets: the ``/metrics`` page)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

try:
    GLIBC = bool(os.confstr("CS_GNU_LIBC_VERSION"))
except (ValueError, OSError):
    GLIBC = False

pytestmark = pytest.mark.skipif(not GLIBC, reason="a glibc malloc setting")

#: frees a 20 MB buffer, then a 10 MB one, and prints the resident anonymous memory kept (MB)
SCRIPT = """
import sys
from monitor.heap import fix_mmap_threshold

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

print(fix_mmap_threshold() if sys.argv[1] == "fixed" else None)
before = anon()
for size in (20 << 20, 10 << 20):
    buffer = b"x" * size  # written: resident
    del buffer
print(round(anon() - before, 1))
"""


def _run(mode: str, **env: str) -> tuple[str, float]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], float(out[1])


def test_a_big_buffer_freed_after_another_goes_back_to_the_system() -> None:
    fixed, kept = _run("fixed")
    assert fixed == "True"
    assert kept < 5  # MB
    default, kept_by_default = _run("default")
    assert default == "None"
    assert kept_by_default > 8  # glibc raised its thresholds after the first free


def test_the_environment_s_own_malloc_setting_is_left_alone() -> None:
    fixed, _ = _run("fixed", MALLOC_MMAP_THRESHOLD_="65536")
    assert fixed == "False"
