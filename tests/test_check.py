"""The daemon's composition in-process: one ``run_once`` per check against a loopback page server.

These cover the wiring that the pure unit tests cannot: thresholds from rules, the pairs filter, the
re-fetch that confirms an implausible jump, active windows, and secrets kept out of every log line.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.app import build_app
from monitor.config_types import ActiveWindow
from monitor.daemon import Daemon, in_window, startup_spread
from monitor.logs import configure_logging
from monitor.models import Validators
from monitor.settings import Settings, load_settings, secret_values
from tests.daemon_harness import alerts, page, write_config
from tests.pages import ticker_text
from tests.servers import PageServer, Reply, Request
from tests.store_backends import Clock

BASE = {"TMT/USD": ("0.28575", "0")}
T0 = datetime(2025, 5, 16, 9, 30, tzinfo=UTC)


async def check(config: Path, clock: Clock | None = None) -> list[str]:
    """``run --once`` on ``config`` (at ``clock``'s time when given)."""
    settings = load_settings(config)
    app = await (build_app(settings) if clock is None else build_app(settings, clock=clock))
    results = await Daemon(app).run_once()
    return [r.outcome for r in results]


def kinds(path: Path) -> list[tuple[str, str | None]]:
    return [(a["kind"], a["pair"]) for a in alerts(path)]


async def test_a_check_uses_what_its_turn_loaded_unless_it_waits_for_a_slot(
    tmp_path: Path,
) -> None:
    """The daemon's turn brings the state and silences (one round trip, ``Cluster.turn``); a
    check that must wait for a free slot reads them again when it starts (they may be old)."""
    async with PageServer(page(BASE)) as server:
        config = write_config(
            tmp_path, server.url, sinks=("audit",), monitor="max_concurrent_checks = 1\n"
        )
        app = await build_app(load_settings(config))
        await app.store.open()
        try:
            (plan,) = app.plans
            assert (await app.checker.check(plan)).outcome == "observed"  # the baseline
            state, _, _ = await app.store.load_for_check(plan.name, now=T0)
            assert state.snapshot is not None
            moved = tuple(
                replace(q, rate=Decimal("0.28570")) if q.pair == "TMT/USD" else q
                for q in state.snapshot.quotes
            )
            # (no validators: the page server would answer 304 to the stored ones)
            stale = (
                replace(state, snapshot=replace(state.snapshot, quotes=moved)),
                Validators(),
                [],
            )
            # a free slot: the check compares the page with what it was given
            assert (await app.checker.check(plan, loaded=stale)).events == 1
            # the slot taken by a slow check: the check waits, then reads the stored state
            arrived = asyncio.Event()

            def slow_reply(_: Request) -> Reply:
                arrived.set()  # the slow check holds the slot now
                return Reply(200, body=page(BASE).encode(), delay=0.5)

            server.script(slow_reply)
            slow = asyncio.create_task(app.checker.check(plan))
            await arrived.wait()
            waited = await app.checker.check(plan, loaded=stale)
            assert ((await slow).events, waited.events) == (0, 0)
        finally:
            await app.aclose()
    assert kinds(tmp_path / "audit.jsonl") == []  # nothing delivered: no deliverer ran


async def test_implausible_jump_is_refetched_and_a_glitch_never_alerts(tmp_path: Path) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",))
        assert await check(config) == ["observed"]
        glitch = page({"TMT/USD": ("2.8575", "0")}).encode()  # ten times the rate, for one fetch
        server.script(Reply(200, body=glitch))
        before = len(server.requests)
        assert await check(config) == ["observed"]
        assert len(server.requests) - before == 2  # the jump was confirmed by a second fetch
        assert alerts(tmp_path / "audit.jsonl") == []

        server.set_page(page({"TMT/USD": ("2.8575", "0")}))  # a real move: both fetches agree
        assert await check(config) == ["observed"]
        (alert,) = alerts(tmp_path / "audit.jsonl")
        assert (alert["kind"], alert["new"]["rate"]) == ("rate_changed", "2.8575")


async def test_an_unconfirmed_jump_holds_the_pair_until_a_check_confirms_it(
    tmp_path: Path,
) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",))
        assert await check(config) == ["observed"]
        # two reads, two different implausible rates: neither is trusted
        server.script(
            Reply(200, body=page({"TMT/USD": ("2.8575", "0")}).encode()),
            Reply(200, body=page({"TMT/USD": ("5.7150", "0")}).encode()),
        )
        assert await check(config) == ["observed"]
        assert alerts(tmp_path / "audit.jsonl") == []
        server.set_page(page({"TMT/USD": ("5.7150", "0")}))  # the page settles: both reads agree
        assert await check(config) == ["observed"]
    (alert,) = alerts(tmp_path / "audit.jsonl")
    assert (alert["old"]["rate"], alert["new"]["rate"]) == ("0.28575", "5.7150")


async def test_a_failed_or_late_refetch_holds_the_jump_and_keeps_the_other_changes(
    tmp_path: Path,
) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",), interval="10s", timeout="1s")
        assert await check(config) == ["observed"]
        jumped = {"TMT/USD": ("2.8575", "0"), "KGS/USD": ("0.01150", "0.52")}
        server.script(Reply(200, body=page(jumped).encode()), Reply(503))
        assert await check(config) == ["observed"]
        assert kinds(tmp_path / "audit.jsonl") == [
            ("rate_changed", "KGS/USD"),
            ("change_pct_changed", "KGS/USD"),
        ]
        # a re-fetch slower than what is left of the 1 s deadline: the check ends in time
        jumped = {"TMT/USD": ("2.8575", "0"), "KGS/USD": ("0.01150", "0.6")}
        server.script(
            Reply(200, body=page(jumped).encode()),
            Reply(200, body=page(jumped).encode(), delay=30),
        )
        started = asyncio.get_running_loop().time()
        assert await check(config) == ["observed"]
        assert asyncio.get_running_loop().time() - started < 10
    assert [a["pair"] for a in alerts(tmp_path / "audit.jsonl")] == ["KGS/USD"] * 3


async def test_threshold_rule_fires_on_entering_and_rearms_on_leaving(tmp_path: Path) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit",),
            extra=(
                '[[rules]]\nname = "big"\nmin_abs_change_pct = 0.5\npairs = ["TMT/USD"]\n'
                'sinks = ["alarm"]\n'
                f'[sinks.alarm]\ntype = "file"\npath = "{tmp_path / "alarm.jsonl"}"\n'
            ),
        )
        for change in ("0", "-0.6", "-0.7", "0.1", "0.9"):
            server.set_page(page({"TMT/USD": ("0.28575", change)}))
            assert await check(config) == ["observed"]
    fired = alerts(tmp_path / "alarm.jsonl")
    assert [(a["kind"], a["rule"], a["new"]["change_pct"]) for a in fired] == [
        ("threshold", "big", "-0.6"),
        ("threshold", "big", "0.9"),
    ]
    seen = [a["kind"] for a in alerts(tmp_path / "audit.jsonl")]  # the catch-all rule: everything
    assert (seen.count("change_pct_changed"), seen.count("threshold")) == (4, 2)


async def test_pairs_filter_and_missing_pairs(tmp_path: Path) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(
            tmp_path, server.url, sinks=("audit",), target_extra='pairs = ["TMT/USD"]'
        )
        assert await check(config) == ["observed"]
        server.set_page(page({"KGS/USD": ("0.02", "5"), "TMT/USD": ("0.28575", "-0.14")}))
        assert await check(config) == ["observed"]
        assert kinds(tmp_path / "audit.jsonl") == [("change_pct_changed", "TMT/USD")]

        config = write_config(
            tmp_path, server.url, sinks=("audit",), target_extra='pairs = ["EUR/USD"]'
        )
        assert await check(config) == ["parse_failed"]


async def test_down_after_time_marks_a_source_down_before_the_count(tmp_path: Path) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(
            tmp_path,
            server.url,
            sinks=("audit",),
            target_extra='down_after = 100\ndown_after_time = "1s"',
        )
        clock = Clock(datetime.now(UTC))
        assert await check(config, clock) == ["observed"]
        server.default = Reply(502)
        clock.advance(0.9)
        assert await check(config, clock) == ["fetch_failed"]
        assert alerts(tmp_path / "audit.jsonl") == []
        clock.advance(0.2)  # 1.1 s since the last success
        assert await check(config, clock) == ["fetch_failed"]
    assert kinds(tmp_path / "audit.jsonl") == [("source_down", None)]


async def test_disagreeing_repeats_are_logged_and_the_first_block_wins(tmp_path: Path) -> None:
    first = [("KGS/USD", "0.01144", "0"), ("TMT/USD", "0.28575", "0")]
    later = [("KGS/USD", "0.01144", "0"), ("TMT/USD", "0.29000", "1.2")]
    text = ticker_text(first, repeats=1).rstrip("\n") + "\n" + ticker_text(later, repeats=3)
    async with PageServer(text, content_type="text/plain") as server:
        config = write_config(tmp_path, server.url, sinks=("audit",))
        with structlog.testing.capture_logs() as logs:
            assert await check(config) == ["observed"]
    (warning,) = [entry for entry in logs if entry["event"] == "ticker_repeats_disagree"]
    assert warning["pairs"] == ["TMT/USD"]
    assert warning["log_level"] == "warning"


async def test_an_unchanged_check_writes_nothing(tmp_path: Path) -> None:
    async with PageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",))
        assert await check(config) == ["observed"]
        written = target_row(tmp_path / "state.db")
        assert await check(config) == ["not_modified"]
        assert target_row(tmp_path / "state.db") == written
        server.set_page(page(BASE), etag=False, last_modified=False)  # same ticker, no validators
        assert await check(config) == ["observed"]  # the validators are gone: written
        written = target_row(tmp_path / "state.db")
        assert await check(config) == ["observed"]
        assert target_row(tmp_path / "state.db") == written
        server.set_page(page({"TMT/USD": ("0.28575", "-0.14")}))
        assert await check(config) == ["observed"]
        assert target_row(tmp_path / "state.db") != written


def target_row(db: Path) -> tuple[object, ...]:
    with closing(sqlite3.connect(db)) as conn:
        return tuple(conn.execute("SELECT * FROM targets").fetchone())


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        (None, datetime(2025, 5, 17, 3, 0, tzinfo=UTC), True),
        # Ashgabat is UTC+5: 04:00 UTC is 09:00 there, a Friday
        (ActiveWindow(days=["fri"], hours="09:00-18:00", timezone="Asia/Ashgabat"),
         datetime(2025, 5, 16, 4, 0, tzinfo=UTC), True),
        (ActiveWindow(days=["fri"], hours="09:00-18:00", timezone="Asia/Ashgabat"),
         datetime(2025, 5, 16, 3, 59, tzinfo=UTC), False),
        (ActiveWindow(days=["fri"], hours="09:00-18:00", timezone="Asia/Ashgabat"),
         datetime(2025, 5, 16, 13, 0, tzinfo=UTC), False),
        (ActiveWindow(days=["sat"], hours="09:00-18:00", timezone="Asia/Ashgabat"),
         datetime(2025, 5, 16, 6, 0, tzinfo=UTC), False),
        (ActiveWindow(hours="22:00-06:00"), datetime(2025, 5, 16, 23, 30, tzinfo=UTC), True),
        (ActiveWindow(hours="22:00-06:00"), datetime(2025, 5, 16, 5, 59, tzinfo=UTC), True),
        (ActiveWindow(hours="22:00-06:00"), datetime(2025, 5, 16, 12, 0, tzinfo=UTC), False),
        (ActiveWindow(hours="00:00-24:00"), datetime(2025, 5, 16, 23, 59, 59, tzinfo=UTC), True),
    ],
)  # fmt: skip
def test_active_windows(window: ActiveWindow | None, moment: datetime, inside: bool) -> None:
    assert in_window(window, moment) is inside


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


async def test_no_secret_reaches_any_log_line(tmp_path: Path, log_stream: io.StringIO) -> None:
    """Every secret-bearing sink fails against a live server; the logs carry none of the secrets."""
    secrets = {
        "slack": "T0SECRET/B0SECRET/slacktokenvalue42",
        "password": "smtp-pa55word-value",
        "hmac": "hmac-shared-secret-value",
        "header": "Bearer header-token-value",
        "query": "querytokenvalue77",
    }
    async with PageServer(page(BASE)) as server:
        server.route("/services/" + secrets["slack"], Reply(500, body=b"boom " * 3))
        server.route("/hook", Reply(503, body=b"down"))
        extra = f"""
[sinks.slack]
type = "slack"
webhook_url = "{server.url_for("/services/" + secrets["slack"])}"
[sinks.mail]
type = "email"
host = "127.0.0.1"
port = 1
tls = "none"
username = "alerts"
password = "{secrets["password"]}"
from = "a@example.org"
to = ["b@example.org"]
[sinks.hook]
type = "webhook"
url = "{server.url_for("/hook")}?token={secrets["query"]}"
secret = "{secrets["hmac"]}"
headers = {{ Authorization = "{secrets["header"]}" }}
"""
        config = write_config(tmp_path, server.url, sinks=("slack", "mail", "hook"), extra=extra)
        settings: Settings = load_settings(config)
        configure_logging(
            level="debug",
            fmt="json",
            secrets=secret_values(settings),
            stream=log_stream,
            cache=False,
        )
        assert [r.outcome for r in await Daemon(await build_app(settings)).run_once()] == [
            "observed"
        ]
        server.set_page(page({"TMT/USD": ("0.28575", "-0.14")}))
        assert [r.outcome for r in await Daemon(await build_app(settings)).run_once()] == [
            "observed"
        ]
    text = log_stream.getvalue()
    records: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]
    assert any(r["event"] == "delivery_retry" for r in records)  # the sinks really failed
    for name, secret in secrets.items():
        for fragment in {secret, secret.split("/")[-1], secret.removeprefix("Bearer ")}:
            assert fragment not in text, name


def test_schedule_spreads_first_runs_and_keeps_the_mean_period(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9/",
        interval="60s",
        target_extra="",
    )
    text = config.read_text(encoding="utf-8").replace("jitter = 0", 'jitter = "10s"')
    config.write_text(text, encoding="utf-8")
    daemon = Daemon(asyncio.run(build_app(load_settings(config))))
    scheduler = AsyncIOScheduler(timezone=UTC)
    before = datetime.now(UTC)
    daemon.schedule(scheduler)
    (job,) = [j for j in scheduler.get_jobs() if j.id == "target:timesca"]
    assert job.trigger.interval.total_seconds() == 55.0  # 60 - 10/2: the mean stays 60
    assert job.trigger.jitter == 10.0
    assert job.max_instances == 1
    assert job.coalesce is True
    assert job.misfire_grace_time is None  # a late run (a clock step, a sleep) runs, once
    # one target: its first run comes at once (within 1 / STARTUP_RATE s)
    assert before <= job.next_run_time <= before + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("targets", "interval", "spread"),
    [(1, 60.0, 0.1), (100, 2.0, 2.0), (100, 60.0, 10.0), (5000, 60.0, 60.0), (1000, 300.0, 100.0)],
)
def test_first_runs_are_spread_no_faster_than_the_start_rate_or_the_steady_one(
    targets: int, interval: float, spread: float
) -> None:
    assert startup_spread(targets, interval) == pytest.approx(spread)


async def test_a_stop_during_housekeeping_lets_it_finish_and_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/", interval="60s")
    app = await build_app(load_settings(config))
    entered, release = asyncio.Event(), asyncio.Event()
    expire = app.store.expire_history

    async def slow_expire(before: datetime) -> int:  # housekeeping runs at start: hold it there
        entered.set()
        await release.wait()
        return await expire(before)

    app.store.expire_history = slow_expire  # type: ignore[method-assign]
    daemon = Daemon(app)
    running = asyncio.create_task(daemon.run_forever())
    await asyncio.wait_for(entered.wait(), timeout=10)
    daemon.request_stop()  # while housekeeping waits on the store
    await asyncio.sleep(0.2)
    release.set()
    await asyncio.wait_for(running, timeout=20)
    assert not [r for r in caplog.records if r.exc_info]  # no CancelledError traceback
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_sigterm_while_the_store_opens_ends_the_start_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal handlers come first: a SIGTERM during the start (the store opening, the first
    heartbeat) is a clean stop, not the default action that kills the process (exit -15)."""
    async with PageServer(page(BASE)) as server:
        config = write_config(tmp_path, server.url, sinks=("audit",))
        app = await build_app(load_settings(config))
        opening = app.store.open

        async def open_with_a_sigterm() -> None:
            # guarded: without a handler the signal would kill the test run itself
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            os.kill(os.getpid(), signal.SIGTERM)
            await opening()

        monkeypatch.setattr(app.store, "open", open_with_a_sigterm)
        with structlog.testing.capture_logs() as logs:
            await asyncio.wait_for(Daemon(app).run_forever(), timeout=30)
    events = [e["event"] for e in logs]
    assert "signal_received" in events
    assert events[-1] == "daemon_stopped"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back
