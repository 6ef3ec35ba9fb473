"""Helpers for end-to-end tests: run the real daemon process against real loopback servers.

The daemon runs as ``python -m monitor run`` in a subprocess with its own working directory, a
config file written by the test, and JSON logs captured to a file. Alerts are audited through file
sinks (JSON Lines), which record exactly what was delivered.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.pages import SEED_DATE, SEED_QUOTES, QuoteSpec, ticker_html

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def page(changes: dict[str, tuple[str, str | None]] | None = None) -> str:
    """The seed marquee as a whole HTML page, with some pairs' (rate, change) replaced."""
    changes = changes or {}
    quotes: list[QuoteSpec] = [
        (pair, *changes.get(pair, (rate, change))) for pair, rate, change in SEED_QUOTES
    ]
    return ticker_html(quotes, date_line=SEED_DATE, filler_kb=20)


def write_config(
    workdir: Path,
    page_url: str,
    *,
    interval: str = "1s",
    sinks: Sequence[str] = ("audit", "audit2"),
    extra: str = "",
    listen: str = "",
    retries: int | None = 0,
    timeout: str | None = None,
    target_extra: str = "",
    delivery: str = 'lease = "2s"\nbackoff_initial = "200ms"\nbackoff_max = "1s"\n',
    monitor: str = "",
    database: Path | None = None,
    grace: str = "5s",
    file_sink_extra: str = "",
) -> Path:
    """The test's ``monitor.toml``: one target, one rule routing everything to ``sinks``; the
    names starting with ``audit`` are file sinks ``workdir/NAME.jsonl`` (``file_sink_extra`` goes
    into each of their tables), the others are for ``extra`` to define. ``None`` leaves a key at
    its default."""
    sink_tables = "".join(
        f'[sinks.{name}]\ntype = "file"\npath = "{workdir / (name + ".jsonl")}"\n'
        f"{file_sink_extra}\n\n"
        for name in sinks
        if name.startswith("audit")
    )
    text = f"""
[monitor]
database = "sqlite:///{database or workdir / "state.db"}"
log_format = "json"
log_level = "info"
listen = "{listen}"
grace_period = "{grace}"
{monitor}

[delivery]
{delivery}

[[targets]]
name = "timesca"
url = "{page_url}"
interval = "{interval}"
jitter = 0
{"" if timeout is None else f'timeout = "{timeout}"'}
{"" if retries is None else f"retries = {retries}"}
{target_extra}

[[rules]]
name = "all"
sinks = {json.dumps(list(sinks))}

{sink_tables}
{extra}
"""
    path = workdir / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def run_cli(
    config: Path, *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m monitor ARGS --config CONFIG``; its output is also kept in the config's
    directory (``cli-N.out``), so that the reliability suite's secret grep reads it too."""
    done = subprocess.run(
        [sys.executable, "-m", "monitor", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=config.parent,
        env=_env(env),
    )
    n = len(list(config.parent.glob("cli-*.out"))) + 1
    (config.parent / f"cli-{n}.out").write_text(
        f"$ {' '.join(args)}\n[exit {done.returncode}]\n{done.stdout}\n{done.stderr}",
        encoding="utf-8",
    )
    return done


def run_once(config: Path, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=config.parent,
        env=_env(),
    )


class DaemonProcess:
    """The long-running daemon in a subprocess, logs in ``workdir/daemon-N.log``.

    ``env`` adds variables (``LD_PRELOAD`` for libfaketime ...); ``preexec`` runs in the child
    before the daemon starts (resource limits).
    """

    count = 0

    def __init__(
        self,
        config: Path,
        *,
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        DaemonProcess.count += 1
        self.log_path = config.parent / f"daemon-{DaemonProcess.count}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self._entries: list[dict[str, Any]] = []
        self._offset = 0
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env=_env(env),
            preexec_fn=preexec,  # noqa: PLW1509 -- only resource limits, no threads involved
        )

    def logs(self) -> list[dict[str, Any]]:
        """Every log line so far (parsed once each; a non-JSON line as ``{"event": "_raw"}``)."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        for raw in data[:end].decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                entry = {"event": "_raw", "line": raw}
            self._entries.append(entry if isinstance(entry, dict) else {"event": "_raw"})
        return list(self._entries)

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs() if entry.get("event") == name]

    def wait_log(self, name: str, timeout: float = 20, count: int = 1, **fields: Any) -> bool:
        """Wait until ``count`` lines of event ``name`` (with these field values) were logged."""

        def seen() -> bool:
            found = [
                e
                for e in self.events_named(name)
                if all(e.get(key) == value for key, value in fields.items())
            ]
            return len(found) >= count

        return wait_for(seen, timeout=timeout, every=0.05)

    def terminate(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


def scrape(port: int, path: str, workdir: Path | None = None, timeout: float = 5) -> str:
    """GET ``http://127.0.0.1:PORT/PATH``; the text is also kept in ``workdir`` (for the secret
    grep) when given."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        text = str(resp.read().decode("utf-8"))
    if workdir is not None:
        n = len(list(workdir.glob("scrape-*.txt"))) + 1
        (workdir / f"scrape-{n}.txt").write_text(text, encoding="utf-8")
    return text


def messages(path: Path) -> list[dict[str, Any]]:
    """The records a file sink wrote, in order: one per message line (one pair's events of one
    check, or one outage event)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def alerts(path: Path) -> list[dict[str, Any]]:
    """The events a file sink delivered, in order: each event of each record, with the record's
    ``message`` and ``sink``."""
    return [
        {**event, "message": record["message"], "sink": record["sink"]}
        for record in messages(path)
        for event in record["events"]
    ]


def outbox_rows(db: Path, status: str | None = None) -> list[sqlite3.Row]:
    """Read the daemon's outbox from a second, read-only connection (as an operator would)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        if status:
            return list(
                conn.execute("SELECT * FROM outbox WHERE status = ? ORDER BY id", (status,))
            )
        return list(conn.execute("SELECT * FROM outbox ORDER BY id"))
    except sqlite3.OperationalError:
        return []  # the schema is not there yet
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 15, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
