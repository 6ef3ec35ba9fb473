"""`ticker-monitor demo` as a new user runs it: no configuration, no network; an alert within ten
seconds, the status page answering, and Ctrl-C (SIGINT) stopping it cleanly."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.demo import CYCLE, LAYOUT_BREAK, OUTAGE, STEP, SimulatedTicker
from monitor.parse import Grammar, parse
from tests.daemon_harness import ROOT
from tests.test_endpoint import get

ALERT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ demo [A-Z]{3}/USD ")


def test_demo_shows_an_alert_within_ten_seconds_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--port", "0", "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,  # no configuration file anywhere near
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True)
    reader.start()
    seen: list[str] = []

    def until(pattern: re.Pattern[str], deadline: float) -> str | None:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(line)
            if pattern.search(line):
                return line
        return None

    try:
        status_line = until(re.compile(r"status page: +http://127\.0\.0\.1:\d+/"), started + 10)
        assert status_line is not None, seen
        url = status_line.split()[-1]
        state_line = until(re.compile(r"state: +/"), started + 10)
        assert state_line is not None, seen
        workdir = Path(state_line.split()[1])
        assert workdir.is_dir()
        first_alert = until(ALERT, started + 10)
        assert first_alert is not None, f"no alert within 10 s: {seen}"
        code, html = get(url)
        assert code == 200
        assert "demo" in html
        assert "USD" in html
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        reader.join(timeout=5)
        while not lines.empty():
            seen.append(lines.get())
        assert seen[-1].strip() == "demo stopped"
        assert not [x for x in seen if "Traceback" in x or "[error" in x]
        assert not workdir.exists()  # the temporary state is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_the_simulated_page_moves_breaks_and_goes_down_on_schedule() -> None:
    ticker = SimulatedTicker(random.Random(1))
    today = datetime(2025, 5, 16, tzinfo=UTC)
    grammar = Grammar.from_config(pattern=None, quote_currency=None, decimal_separator=".")
    first = parse(ticker.page(0.0, today).html.encode(), selector=None, grammar=grammar)
    assert [q.pair for q in first.quotes] == ["KGS/USD", "KZT/USD", "TJS/USD", "UZS/USD", "TMT/USD"]
    assert str(first.by_pair()["TMT/USD"].rate) == "0.28575"
    assert first.page_date == today.date()
    later = parse(ticker.page(4 * STEP, today).html.encode(), selector=None, grammar=grammar)
    assert later.quotes != first.quotes  # four moves later, something moved
    moved = [
        (q.pair, q.rate / first.by_pair()[q.pair].rate)
        for q in later.quotes
        if q.rate != first.by_pair()[q.pair].rate
    ]
    assert all(abs(ratio - 1) < 0.02 for _, ratio in moved)  # small moves, no implausible jumps
    broken = ticker.page(CYCLE + LAYOUT_BREAK[0], today)
    assert broken.status == 200
    with pytest.raises(Exception, match="no ticker"):
        parse(broken.html.encode(), selector=None, grammar=grammar)
    assert ticker.page(2 * CYCLE + OUTAGE[0], today).status == 503
    assert ticker.page(2 * CYCLE + OUTAGE[1], today).status == 200
