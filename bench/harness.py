"""What the benchmarks share: a page server in its own process and a daemon's settings in code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitor.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


class SetupError(RuntimeError):
    """The benchmark could not be set up (no page server, no readable page)."""


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content at once: the page server never reads half a page."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def start_server(
    page: Path, *, validators: bool, log: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``python -m tests.servers`` serving ``page`` on a free loopback port; returns it and its URL.

    ``log``: the server appends ``monotonic-time query status page-version`` per request there.
    """
    args = [sys.executable, "-m", "tests.servers", "--page", str(page)]
    if not validators:
        args.append("--no-validators")
    if log is not None:
        args += ["--log", str(log)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip() if proc.stdout is not None else ""
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        proc.wait(timeout=10)
        raise SetupError(f"the page server did not start (it printed {url!r})")
    return proc, url


def settings_for(url: str, workdir: Path, targets: int) -> Settings:
    """``targets`` targets at ``url?t=i``, state and a file sink in ``workdir``, one rule."""
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
