"""The operator endpoint under faults: liveness never waits on the store, and the listen address.

A load balancer kills a process whose ``/healthz`` does not answer and keeps one whose readiness
says ready: so ``/healthz`` and ``/metrics`` must answer at once while another process holds the
SQLite write lock (the daemon's own writes then wait out the busy timeout) and while the disk is
full. The listen address binds beyond loopback only as written out (``0.0.0.0:9464``, with a
warning at start), never through a shorthand the socket layer would also take (``0:9464``,
``0x0:9464`` mean every interface); a busy port ends the start in one line, exit 2. Readiness,
unlike liveness, says the store is failing while its writes fail (a locked file still answers
reads) and comes back once they go in again.
"""

from __future__ import annotations

import errno
import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, free_port, run_cli, wait_for
from tests.reliability.conftest import IoFault, Sinks, page_with, rate, record, write_config
from tests.reliability.test_store_faults import BUSY_TIMEOUT, write_lock
from tests.servers import ThreadedPageServer

#: what "at once" means for a liveness probe on this (shared, loaded) machine
PROMPT = 1.0


def timed_get(port: int, path: str) -> tuple[int, float]:
    """(status, seconds) of one GET on the endpoint, with a timeout far above ``PROMPT``."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def readyz(port: int) -> tuple[int, dict[str, object]]:
    """(status, body) of ``/readyz``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def not_ready_naming_the_store(port: int) -> bool:
    status, body = readyz(port)
    failing = body.get("failing")
    return status == 503 and isinstance(failing, dict) and "store" in failing


def probe_while(port: int, seconds: float) -> dict[str, float]:
    """Probe ``/healthz`` and ``/metrics`` for ``seconds``; the slowest answer of each."""
    slowest = {"healthz": 0.0, "metrics": 0.0}
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for path, worst in slowest.items():
            status, took = timed_get(port, f"/{path}")
            assert status == 200, (path, status)
            slowest[path] = max(worst, took)
        time.sleep(0.2)
    return slowest


def figures(slowest: dict[str, float]) -> dict[str, float]:
    return {f"slowest_{path}_s": round(seconds, 3) for path, seconds in slowest.items()}


def test_liveness_answers_at_once_while_the_store_is_locked(tmp_path: Path) -> None:
    port = free_port()
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(tmp_path, source.url, Sinks(), listen=f"127.0.0.1:{port}")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            with write_lock(tmp_path / "state.db"):
                source.set_page(page_with(rate(1)))  # the check's commit now waits, then fails
                slowest = probe_while(port, BUSY_TIMEOUT * 2 + 2)
                assert daemon.events_named("check_store_failed")  # the store really was stuck
                # reads still answer under a write lock; readiness follows the failed writes
                assert not_ready_naming_the_store(port), readyz(port)
            assert max(slowest.values()) < PROMPT, slowest
            assert wait_for(lambda: readyz(port)[0] == 200, timeout=30), readyz(port)
            assert daemon.terminate() == 0
    record("liveness_store_locked", **figures(slowest))


def test_liveness_answers_at_once_while_the_disk_is_full(tmp_path: Path, iofault: IoFault) -> None:
    port = free_port()
    db = tmp_path / "state.db"
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(
            tmp_path, source.url, Sinks(), listen=f"127.0.0.1:{port}", database=db
        )
        with DaemonProcess(config, env=iofault.env(db)) as daemon:
            assert daemon.wait_log("check_done", timeout=30)
            iofault.fail(errno.ENOSPC)
            try:
                source.set_page(page_with(rate(1)))
                slowest = probe_while(port, 6)
                assert wait_for(lambda: daemon.events_named("check_store_failed"), timeout=15)
                assert not_ready_naming_the_store(port), readyz(port)
            finally:
                iofault.heal()
            assert max(slowest.values()) < PROMPT, slowest
            assert wait_for(lambda: readyz(port)[0] == 200, timeout=30), readyz(port)
            assert daemon.terminate() == 0
    record("liveness_disk_full", **figures(slowest))


@pytest.mark.parametrize("listen", ["0:{port}", "0x0:{port}", "127.1:{port}"])
def test_a_shorthand_for_every_interface_is_refused(tmp_path: Path, listen: str) -> None:
    config = write_config(
        tmp_path, "http://127.0.0.1:9/", Sinks(), listen=listen.format(port=free_port())
    )
    for command in (("validate",), ("run",)):
        done = run_cli(config, *command, timeout=30)
        assert done.returncode == 2, done
        (line,) = done.stderr.strip().splitlines()  # refused before logging starts
        assert line.startswith("ticker-monitor: config error: monitor.listen: ")
        assert "is not an IP address written out in full" in line


def test_every_interface_written_out_binds_with_a_warning(tmp_path: Path) -> None:
    port = free_port()
    with ThreadedPageServer(page_with(rate(0))) as source:
        config = write_config(tmp_path, source.url, Sinks(), listen=f"0.0.0.0:{port}")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("web_listening_beyond_loopback", timeout=30)
            (warning,) = daemon.events_named("web_listening_beyond_loopback")
            assert (warning["level"], warning["host"], warning["port"]) == (
                "warning",
                "0.0.0.0",
                port,
            )
            assert timed_get(port, "/healthz")[0] == 200
            assert daemon.terminate() == 0


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with ThreadedPageServer(page_with(rate(0))) as source:
            config = write_config(tmp_path, source.url, Sinks(), listen=f"127.0.0.1:{port}")
            done = run_cli(config, "run", timeout=60)
    assert done.returncode == 2, done
    *_, line = done.stderr.strip().splitlines()  # the logs (JSON) go to stderr too
    assert "Traceback" not in done.stderr
    assert line == (
        f"ticker-monitor: config error: monitor.listen: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )
