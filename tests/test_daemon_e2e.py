"""The real daemon process against a real page server on 127.0.0.1 whose ticker the test changes.

Alerts are audited through two file sinks (each must get every alert). ``run --once`` makes most
scenarios deterministic; the long-running daemon is exercised for scheduling, SIGTERM, the endpoint
and crash safety (SIGKILL).
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.daemon_harness import (
    DaemonProcess,
    alerts,
    free_port,
    outbox_rows,
    page,
    run_cli,
    run_once,
    wait_for,
    write_config,
)
from tests.servers import Reply, Request, ThreadedPageServer

pytestmark = pytest.mark.slow

#: the baseline: TMT/USD at 0% (the seed page shows it at -0.14%)
BASE = {"TMT/USD": ("0.28575", "0")}
TMT_DOWN = {"TMT/USD": ("0.28575", "-0.14")}


def kinds(path: Path) -> list[tuple[str, str | None]]:
    return [(a["kind"], a["pair"]) for a in alerts(path)]


def test_change_is_alerted_once_per_sink_and_never_again(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url)

        first = run_once(config)
        assert first.returncode == 0, first.stderr
        assert alerts(tmp_path / "audit.jsonl") == []  # the first observation is a baseline

        server.set_page(page(TMT_DOWN))
        assert run_once(config).returncode == 0
        for sink in ("audit", "audit2"):
            (alert,) = alerts(tmp_path / f"{sink}.jsonl")
            assert alert["kind"] == "change_pct_changed"
            assert alert["target"] == "timesca"
            assert alert["pair"] == "TMT/USD"
            assert alert["old"] == {"rate": "0.28575", "change_pct": "0"}
            # exact values, and the page's own text where it differs (a unicode minus here)
            assert alert["new"] == {
                "rate": "0.28575",
                "change_pct": "-0.14",
                "change_text": "−0.14",
            }
            assert alert["page_date"] == "2025-05-16"

        # the same page again (a 304 now), and again after a restart: nothing re-sent
        assert run_once(config).returncode == 0
        assert run_once(config).returncode == 0
        assert len(alerts(tmp_path / "audit.jsonl")) == 1
        assert any("if-none-match" in r.headers for r in server.requests)

        server.set_page(page({"TMT/USD": ("0.28600", "-0.14")}))
        assert run_once(config).returncode == 0
        for sink in ("audit", "audit2"):
            assert kinds(tmp_path / f"{sink}.jsonl") == [
                ("change_pct_changed", "TMT/USD"),
                ("rate_changed", "TMT/USD"),
            ]
            last = alerts(tmp_path / f"{sink}.jsonl")[-1]
            assert last["old"]["rate"] == "0.28575"
            assert last["new"]["rate"] == "0.28600"
        assert all(row["status"] == "sent" for row in outbox_rows(tmp_path / "state.db"))


def test_source_outage_then_recovery(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, retries=0)
        assert run_once(config).returncode == 0  # baseline
        server.default = Reply(500, body=b"upstream broke")
        for _ in range(4):
            failed = run_once(config)  # a failed check: cron hears of it (and nothing is lost)
            assert failed.returncode == 4, failed.stderr
            assert "ticker-monitor: could not fetch: timesca" in failed.stderr
        # meanwhile the page changed; the source comes back
        server.default = None
        server.set_page(page(TMT_DOWN | {"KGS/USD": ("0.01150", "0.52")}))
        assert run_once(config).returncode == 0
        assert run_once(config).returncode == 0
    assert kinds(tmp_path / "audit.jsonl") == [
        ("source_down", None),
        ("source_recovered", None),
        ("rate_changed", "KGS/USD"),
        ("change_pct_changed", "KGS/USD"),
        ("change_pct_changed", "TMT/USD"),
    ]
    assert kinds(tmp_path / "audit2.jsonl") == kinds(tmp_path / "audit.jsonl")


def test_layout_change_alerts_once_and_recovers(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url)
        assert run_once(config).returncode == 0
        server.set_page("<html><body><p>We moved the ticker.</p></body></html>")
        for _ in range(3):
            assert run_once(config).returncode == 3  # no ticker on the page
        server.set_page(b"\x00\xff\xfe garbage \x89PNG\r\n")
        assert run_once(config).returncode == 3
        server.set_page(page(BASE))
        assert run_once(config).returncode == 0
    assert kinds(tmp_path / "audit.jsonl") == [("parse_failed", None), ("parse_recovered", None)]


def test_daemon_schedules_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, interval="1s", listen=f"127.0.0.1:{port}")
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 2, timeout=20), daemon.logs()
            server.set_page(page(TMT_DOWN))
            assert wait_for(lambda: len(alerts(tmp_path / "audit2.jsonl")) == 1, timeout=10)

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                health = json.loads(resp.read())
            assert health["status"] == "ok"
            assert health["targets"] == 1
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'ticker_monitor_checks_total{outcome="observed",target="timesca"}' in metrics
            assert 'ticker_monitor_events_total{kind="change_pct_changed",target="timesca"}' in (
                metrics
            )

            assert daemon.terminate() == 0
            names = [entry.get("event") for entry in daemon.logs()]
            assert "daemon_stopped" in names
            assert not [e for e in daemon.logs() if e.get("level") in ("error", "critical")]
            # the first housekeeping froze what the start made (monitor.heap.CollectorPolicy)
            thawed = daemon.events_named("gc_thawed")
            assert thawed, names
            assert thawed[0]["frozen"] > 10_000
    assert kinds(tmp_path / "audit.jsonl") == [("change_pct_changed", "TMT/USD")]


def test_daemon_survives_every_source_fault_and_keeps_its_schedule(tmp_path: Path) -> None:
    faults = [
        Reply(500),
        Reply(429, headers=[("Retry-After", "1")]),
        Reply(200, body=b"x" * 100, chunk_size=1, drip=1.0),  # drips; the 1 s deadline ends it
        Reply(200, body=b"y" * 65536, repeat=800),  # ~52 MB; the size cap ends it
        Reply.redirect("/loop"),
        Reply(200, raw=b"\x16\x03\x01 not http at all\r\n\r\n"),
        Reply(200, body=b"\x00\x01\x02garbage\xff"),
        Reply(200, body=b"<html><body>no ticker here</body></html>"),
    ]
    with ThreadedPageServer(page(BASE)) as server:
        server.route("/loop", Reply.redirect("/loop"))
        config = write_config(
            tmp_path,
            server.url,
            interval="1s",
            retries=0,
            target_extra="max_bytes = 1000000\ndown_after = 100",
        )
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 1, timeout=20)
            server.script(*faults)
            assert wait_for(lambda: len(server.requests) >= 14, timeout=60), daemon.logs()
            server.set_page(page(TMT_DOWN))
            assert wait_for(lambda: len(alerts(tmp_path / "audit.jsonl")) >= 3, timeout=15)
            assert daemon.proc.poll() is None  # still alive
            assert daemon.terminate() == 0
    assert kinds(tmp_path / "audit.jsonl") == [
        ("parse_failed", None),
        ("parse_recovered", None),
        ("change_pct_changed", "TMT/USD"),
    ]


def test_kill_right_after_commit_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL as soon as the alert's outbox row exists: the restart delivers it."""
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, interval="1s")
        db = tmp_path / "state.db"
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 1, timeout=20)
            server.set_page(page(TMT_DOWN))
            assert wait_for(lambda: len(outbox_rows(db)) >= 2, timeout=15, every=0.002)
            daemon.kill()
        delivered_before = len(alerts(tmp_path / "audit.jsonl"))
        assert delivered_before <= 1
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(alerts(tmp_path / "audit.jsonl")) >= 1, timeout=15)
            assert wait_for(lambda: len(alerts(tmp_path / "audit2.jsonl")) >= 1, timeout=15)
            assert daemon.terminate() == 0
    for sink in ("audit", "audit2"):
        got = alerts(tmp_path / f"{sink}.jsonl")
        assert {a["dedup_id"] for a in got} == {got[0]["dedup_id"]}  # duplicates share an id
        assert [a["kind"] for a in got][:1] == ["change_pct_changed"]
    assert all(row["status"] == "sent" for row in outbox_rows(tmp_path / "state.db"))


def test_kill_mid_delivery_resends_with_the_same_dedup_id(tmp_path: Path) -> None:
    """SIGKILL while a webhook send is in flight: the restart sends it again, recognisably."""
    answered: list[str] = []

    def hook(request: Request) -> Reply:
        first = not answered
        answered.append(request.headers.get("x-ticker-monitor-delivery", ""))
        return Reply(200, body=b"ok", delay=30 if first else 0)  # the first send hangs

    with ThreadedPageServer(page(BASE)) as server, ThreadedPageServer("ok") as receiver:
        receiver.route("/hook", hook)
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit", "hook"),
            extra=f'[sinks.hook]\ntype = "webhook"\nurl = "{receiver.url_for("/hook")}"\n',
        )
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 1, timeout=20)
            server.set_page(page(TMT_DOWN))
            assert wait_for(lambda: len(answered) == 1, timeout=15)  # the send is in flight
            daemon.kill()
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(answered) >= 2, timeout=20), daemon.logs()
            assert daemon.terminate() == 0
    assert len(set(answered)) == 1  # the duplicate carries the same dedup key
    assert answered[0]
    assert kinds(tmp_path / "audit.jsonl")[:1] == [("change_pct_changed", "TMT/USD")]
    hook_rows = [r for r in outbox_rows(tmp_path / "state.db") if r["sink"] == "hook"]
    assert [(r["status"], r["dedup_key"]) for r in hook_rows] == [("sent", answered[0])]


def test_flaky_sink_gets_everything_once_in_order_and_a_dead_sink_blocks_nobody(
    tmp_path: Path,
) -> None:
    accepted: list[str] = []
    flaky_calls: list[str] = []

    def flaky(request: Request) -> Reply:
        flaky_calls.append(request.headers.get("x-ticker-monitor-delivery", ""))
        if len(flaky_calls) <= 3:
            return Reply(503, body=b"try later")
        # a send carries everything due: after the retries, several checks' events may share one
        # message; what counts is every event once, in order
        accepted.extend(e["dedup_key"] for e in json.loads(request.body)["events"])
        return Reply(200, body=b"ok")

    with ThreadedPageServer(page(BASE)) as server, ThreadedPageServer("ok") as receiver:
        receiver.route("/flaky", flaky)
        receiver.route("/gone", Reply(410, body=b"channel_is_archived"))
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit", "flaky", "gone"),
            extra=(
                f'[sinks.flaky]\ntype = "webhook"\nurl = "{receiver.url_for("/flaky")}"\n'
                f'[sinks.gone]\ntype = "webhook"\nurl = "{receiver.url_for("/gone")}"\n'
            ),
        )
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 1, timeout=20)
            for n, change in enumerate(("-0.14", "0.2", "-0.3"), start=1):
                server.set_page(page({"TMT/USD": ("0.28575", change)}))
                assert wait_for(lambda n=n: len(alerts(tmp_path / "audit.jsonl")) == n, timeout=10)
            assert wait_for(lambda: len(accepted) == 3, timeout=20), daemon.logs()
            assert daemon.terminate() == 0
    rows = outbox_rows(tmp_path / "state.db")
    flaky_keys = [r["dedup_key"] for r in rows if r["sink"] == "flaky"]
    assert accepted == flaky_keys  # every event once, in order
    assert {r["status"] for r in rows if r["sink"] == "flaky"} == {"sent"}
    gone = [r for r in rows if r["sink"] == "gone"]
    assert [r["status"] for r in gone] == ["dead", "dead", "dead"]
    assert all("channel_is_archived" in r["last_error"] for r in gone)
    assert [a["new"]["change_pct"] for a in alerts(tmp_path / "audit.jsonl")] == [
        "-0.14",
        "0.2",
        "-0.3",
    ]


def test_sigterm_lets_the_check_in_flight_finish(tmp_path: Path) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, interval="4s")  # a 4 s deadline
        with DaemonProcess(config) as daemon:
            assert wait_for(lambda: len(server.requests) >= 1, timeout=20)
            changed = page(TMT_DOWN).encode()
            server.default = Reply(200, body=changed, delay=2.0)  # a slow answer
            seen = len(server.requests)
            assert wait_for(lambda: len(server.requests) > seen, timeout=10)
            daemon.proc.send_signal(signal.SIGTERM)  # while the page is still on its way
            assert daemon.proc.wait(timeout=15) == 0
            logs = daemon.logs()
    stopping = next(e for e in logs if e.get("event") == "daemon_stopping")
    assert stopping["inflight_checks"] == 1
    assert kinds(tmp_path / "audit.jsonl") == [("change_pct_changed", "TMT/USD")]


def test_a_second_daemon_on_one_sqlite_file_is_refused_and_the_first_goes_on(
    tmp_path: Path,
) -> None:
    with ThreadedPageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, interval="1s")
        with DaemonProcess(config) as first:
            assert first.wait_log("check_done", timeout=20)
            for args in (["run"], ["run", "--once"]):
                done = run_cli(config, *args, timeout=30)
                assert done.returncode == 1, done
                (line,) = done.stderr.strip().splitlines()
                assert line.startswith(
                    "ticker-monitor: StoreError: another daemon uses this SQLite database ("
                ), line
                assert "or use PostgreSQL to run several" in line
            requests = len(server.requests)
            assert wait_for(lambda: len(server.requests) >= requests + 2, timeout=10)
            assert first.terminate() == 0
        # once it has stopped (it left the cluster), the next one starts at once
        done = run_cli(config, "run", "--once", timeout=30)
        assert done.returncode == 0, done.stderr
