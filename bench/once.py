"""``run --once`` over many local pages, next to urlwatch 2.29 on the same pages.

A page server in its own process serves the ~200 KB seed page at ``?t=0`` ... ``?t=N-1`` (no
validators). Each tool first runs once to learn every page (its baseline), then the ticker moves
and it runs again (*all changed*: an alert per page -- ticker-monitor's file sink, urlwatch's
stdout report), then once more (*none changed*). Both make 10 requests at a time (urlwatch's
fixed ``MAX_WORKERS``; ``max_per_host = 10`` and ``max_concurrent_checks = 10`` here). Reported:
wall time and peak RSS of each timed run (its ``VmHWM``), and how many pages alerted.

urlwatch runs from a venv of its own that the bench creates (``var/bench-urlwatch``, ``pip install
urlwatch==2.29``; never a project dependency); when that fails, the comparison is skipped and says
why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import start_server, write_atomically  # noqa: E402 -- after sys.path
from bench.pipeline import page  # noqa: E402 -- same
from tests.daemon_harness import _env  # noqa: E402 -- same

URLWATCH_VENV = ROOT / "var" / "bench-urlwatch"
URLWATCH = "urlwatch==2.29"
#: urlwatch's jobs two ways: the whole page (its default: a changed page costs it a
#: ``difflib.get_close_matches`` over the page's characters, ~65 ms for 200 KB), and only the
#: ticker's element, as a urlwatch user watching the ticker would write it (an lxml parse each).
URLWATCH_SETUPS: dict[str, str | None] = {"urlwatch": None, "urlwatch css": "css:div.ticker"}


def urlwatch() -> tuple[Path | None, str]:
    """The urlwatch executable (installed into its own venv when missing), or why there is none."""
    exe = URLWATCH_VENV / "bin" / "urlwatch"
    if exe.exists():
        return exe, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(URLWATCH_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(URLWATCH_VENV / "bin" / "pip"), "install", "--quiet",
             "--disable-pip-version-check", URLWATCH],
            check=True, timeout=300, capture_output=True,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"{URLWATCH} could not be installed ({type(exc).__name__}): comparison skipped"
    return (exe, "") if exe.exists() else (None, f"{URLWATCH} installed no urlwatch command")


def _hwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+)", status, re.M)
    return int(found[1]) if found else 0


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one run of ``args``.

    The peak is the process's ``VmHWM``, read every 10 ms while it runs: ``wait4``'s
    ``ru_maxrss`` would count the bench's own RSS, which the child has before its ``exec``."""
    start = time.monotonic()
    peak = 0
    with (cwd / "out.txt").open("ab") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, _hwm_kb(proc.pid))
            time.sleep(0.01)
    return {"wall_s": time.monotonic() - start, "peak_rss_mb": peak / 1024, "exit": proc.returncode}


def _ours(workdir: Path, url: str, n: int) -> Path:
    targets = "".join(
        f'[[targets]]\nname = "t{i}"\nurl = "{url}?t={i}"\nretries = 0\n\n' for i in range(n)
    )
    cfg = workdir / "monitor.toml"
    cfg.write_text(
        f"""
[monitor]
database = "sqlite:///{workdir / "state.db"}"
log_format = "json"
log_level = "warning"
listen = ""
max_per_host = 10
max_concurrent_checks = 10

{targets}
[[rules]]
name = "all"
sinks = ["audit"]

[sinks.audit]
type = "file"
path = "{workdir / "alerts.jsonl"}"
""",
        encoding="utf-8",
    )
    return cfg


def _alerted(path: Path) -> int:
    """How many pages an alert line names (ticker-monitor's file sink)."""
    if not path.exists():
        return 0
    import json  # noqa: PLC0415 -- only here

    return len({json.loads(line)["target"] for line in path.read_text().splitlines()})


def measure(n: int, exe: Path | None) -> dict[str, object]:
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-once-") as tmp:
        workdir = Path(tmp)
        page_file = workdir / "page.html"
        write_atomically(page_file, page(0))
        server, url = start_server(page_file, validators=False)
        try:
            ours = workdir / "ours"
            ours.mkdir()
            cfg = _ours(ours, url, n)
            run = [sys.executable, "-m", "monitor", "run", "--once", "--config", str(cfg)]
            env = _env()
            runs: dict[str, object] = {"baseline": timed(run, ours, env)}
            write_atomically(page_file, page(1))
            before = _alerted(ours / "alerts.jsonl")
            runs["all_changed"] = timed(run, ours, env)
            runs["alerted_pages"] = _alerted(ours / "alerts.jsonl") - before
            runs["none_changed"] = timed(run, ours, env)
            out["ticker-monitor"] = runs
            if exe is not None:
                for label, job_filter in URLWATCH_SETUPS.items():
                    write_atomically(page_file, page(0))
                    got = _urlwatch(workdir / label, exe, url, n, page_file, job_filter=job_filter)
                    out[label] = got
        finally:
            server.terminate()
            server.wait(timeout=10)
    return out


def _urlwatch(
    workdir: Path, exe: Path, url: str, n: int, page_file: Path, *, job_filter: str | None
) -> dict[str, object]:
    workdir.mkdir()
    extra = "" if job_filter is None else f"filter: {job_filter}\n"
    (workdir / "urls.yaml").write_text(
        "".join(f"---\nname: t{i}\nurl: {url}?t={i}\n{extra}" for i in range(n)),
        encoding="utf-8",
    )
    run = [
        str(exe),
        "--urls", str(workdir / "urls.yaml"),
        "--config", str(workdir / "urlwatch.yaml"),
        "--hooks", str(workdir / "hooks.py"),
        "--cache", str(workdir / "cache.db"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HOME"] = str(workdir)  # its keyring and config defaults stay in the bench's directory
    runs: dict[str, object] = {"baseline": timed(run, workdir, env)}
    write_atomically(page_file, page(1))
    size = (workdir / "out.txt").stat().st_size
    runs["all_changed"] = timed(run, workdir, env)
    report = (workdir / "out.txt").read_bytes()[size:].decode("utf-8", "replace")
    runs["alerted_pages"] = len(re.findall(r"^\d+\. CHANGED: ", report, re.M))  # its summary
    runs["none_changed"] = timed(run, workdir, env)
    return runs


def run(sizes: tuple[int, ...] = (100, 500)) -> dict[str, object]:
    exe, why = urlwatch()
    out: dict[str, object] = {"urlwatch": str(exe) if exe else why}
    for n in sizes:
        out[str(n)] = measure(n, exe)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(tuple(int(a) for a in sys.argv[1:]) or (100,)), indent=2))
