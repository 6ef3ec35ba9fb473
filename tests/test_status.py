"""The status picture: readiness from memory, the view from a real SQLite store, the page's HTML,
the terminal text, and the sparkline."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.charts import sparkline_svg, terminal_chart
from monitor.cli.status import render_text
from monitor.history import Change, changes
from monitor.models import (
    Event,
    EventKind,
    NewDelivery,
    Quote,
    Reading,
    Snapshot,
    TargetState,
    Validators,
)
from monitor.settings import TargetConfig
from monitor.status import SPARK_OBSERVATIONS, Board, build_view, readiness, relative
from monitor.statuspage import render
from monitor.store import CheckCommit, Observation
from monitor.store.sqlite import SqliteStore

T0 = datetime(2025, 5, 16, 8, 30, tzinfo=UTC)


def target(name: str = "timesca", **extra: object) -> TargetConfig:
    return TargetConfig(name=name, url="https://u:pw@example.org/p?token=s3cr3t", **extra)  # type: ignore[arg-type]


def snap(**rates: str) -> Snapshot:
    return Snapshot(
        quotes=tuple(
            Quote(p.replace("_", "/"), p[:3], p[4:], Decimal(r), Decimal("-0.14"))
            for p, r in rates.items()
        )
    )


def always(_: TargetConfig, __: datetime) -> bool:
    return True


def never(_: TargetConfig, __: datetime) -> bool:
    return False


def test_a_fresh_success_is_ready_and_a_stale_one_names_the_target() -> None:
    t = target(interval=60, jitter=0)
    board = Board([t], started_at=T0)
    assert readiness(board, T0, always) == {"timesca": "no successful check yet"}
    ok = TargetState(snapshot=snap(TMT_USD="0.28575"), last_success_at=T0)
    board.checked("timesca", at=T0, outcome="observed", error="", state=ok)
    assert readiness(board, T0 + timedelta(seconds=120), always) == {}
    stale = readiness(board, T0 + timedelta(seconds=121), always)
    assert stale == {"timesca": "last success 121s ago (limit 120s)"}
    # outside its active window a target is not judged
    assert readiness(board, T0 + timedelta(days=1), never) == {}


def test_down_and_layout_broken_are_not_ready_and_the_store_flag_counts() -> None:
    board = Board([target(), target("other")], started_at=T0)
    down = TargetState(down=True, consecutive_failures=3, last_success_at=T0)
    board.checked("timesca", at=T0, outcome="fetch_failed", error="HTTP 500", state=down)
    broken = TargetState(parse_failing=True, last_success_at=T0)
    board.checked("other", at=T0, outcome="parse_failed", error="no ticker found", state=broken)
    board.store_failed("database is locked")
    assert readiness(board, T0, always) == {
        "store": "the store does not answer: database is locked",
        "timesca": "source down: HTTP 500",
        "other": "layout broken: no ticker found",
    }
    assert board.targets["timesca"].health == "down"
    assert board.targets["other"].health == "layout_broken"


def test_a_failed_write_stands_until_that_writer_writes_again_not_when_a_read_answers() -> None:
    board = Board([], started_at=T0)
    board.store_write_failed("check", "database is locked")
    board.store_answered([])  # a locked SQLite file still answers the read probe
    assert readiness(board, T0, always) == {
        "store": "the store does not answer: database is locked"
    }
    board.store_write_failed("heartbeat", "database or disk is full")
    board.store_wrote("heartbeat")  # the heartbeat went in; the failed check's write has not
    assert not board.store_ok
    assert board.store_error == "database is locked"
    board.store_wrote("check")
    assert board.store_ok
    assert readiness(board, T0, always) == {}
    board.store_failed("no answer within 5s")  # and a failed read on its own counts too
    assert readiness(board, T0, always) == {
        "store": "the store does not answer: no answer within 5s"
    }
    board.store_answered([])
    assert board.store_ok


def test_health_of_a_failing_target_before_it_is_down() -> None:
    board = Board([target()], started_at=T0)
    assert board.targets["timesca"].health == "unknown"
    failing = TargetState(consecutive_failures=1, last_success_at=T0)
    board.checked("timesca", at=T0, outcome="fetch_failed", error="timeout", state=failing)
    assert board.targets["timesca"].health == "failing"
    stored = Board([target()], started_at=T0)  # `status` without a daemon: the stored state only
    stored.seed("timesca", failing)
    assert stored.targets["timesca"].health == "failing"


def test_changes_keep_each_pairs_moves_in_time_order() -> None:
    obs = [
        Observation("t", T0, snap(TMT_USD="0.28575", KGS_USD="0.01144")),
        Observation("t", T0 + timedelta(minutes=5), snap(TMT_USD="0.28600", KGS_USD="0.01144")),
        Observation("t", T0 + timedelta(minutes=9), snap(TMT_USD="0.2860", KGS_USD="0.01150")),
    ]
    got = [(c.pair, c.at - T0, str(c.rate)) for c in changes(obs)]
    assert got == [
        ("TMT/USD", timedelta(0), "0.28575"),
        ("KGS/USD", timedelta(0), "0.01144"),
        ("TMT/USD", timedelta(minutes=5), "0.28600"),
        ("KGS/USD", timedelta(minutes=9), "0.01150"),  # 0.2860 equals 0.28600: no change
    ]
    assert [c.pair for c in changes(obs, pair="KGS/USD")] == ["KGS/USD", "KGS/USD"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.aclose()


def event(rate: str, at: datetime) -> Event:
    return Event(
        kind=EventKind.RATE_CHANGED,
        target="timesca",
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("-0.14")),
        new=Reading(Decimal(rate), Decimal("-0.14")),
        observed_at=at,
    )


async def test_sparklines_read_a_targets_newest_observations_only(store: SqliteStore) -> None:
    n = SPARK_OBSERVATIONS + 20
    for i in range(n):  # a rate moving every minute
        rate = f"0.{28000 + i}"
        await store.commit_check(
            "timesca",
            state=TargetState(snapshot=snap(TMT_USD=rate), last_success_at=T0),
            validators=Validators(),
            observed=snap(TMT_USD=rate),
            observed_at=T0 + timedelta(minutes=i),
            deliveries=[],
        )
    board = Board([target()], started_at=T0)
    board.seed("timesca", (await store.load_target("timesca"))[0])
    now = T0 + timedelta(minutes=n)
    view = await build_view(board, store, now=now, active=always, live=False)
    (pair,) = view.targets[0].pairs
    assert len(pair.history) == SPARK_OBSERVATIONS
    assert str(pair.history[0].rate) == f"0.{28000 + 20}"  # the 20 oldest are left out
    assert str(pair.history[-1].rate) == f"0.{28000 + n - 1}"


async def test_every_targets_sparkline_is_its_own(store: SqliteStore) -> None:
    names = [f"t{i:03d}" for i in range(201)]
    await store.commit_checks(
        [
            CheckCommit(
                name,
                TargetState(snapshot=snap(TMT_USD=f"0.{10000 + i}"), last_success_at=T0),
                Validators(),
                snap(TMT_USD=f"0.{10000 + i + step}"),
                T0 + timedelta(minutes=step),
            )
            for i, name in enumerate(names)
            for step in range(3)
        ]
    )
    board = Board([target(name) for name in names], started_at=T0)
    for name in names:
        board.seed(name, (await store.load_target(name))[0])
    view = await build_view(board, store, now=T0 + timedelta(hours=1), active=always, live=False)
    assert view.store_ok
    for i, t in enumerate(view.targets):
        (pair,) = t.pairs
        assert [str(c.rate) for c in pair.history] == [f"0.{10000 + i + s}" for s in range(3)]


async def test_the_view_groups_alerts_by_event_with_every_sink_status(store: SqliteStore) -> None:
    t1 = T0 + timedelta(minutes=5)
    state = TargetState(snapshot=snap(TMT_USD="0.28600"), last_success_at=t1)
    await store.commit_check(
        "timesca",
        state=TargetState(snapshot=snap(TMT_USD="0.28575")),
        validators=Validators(),
        observed=snap(TMT_USD="0.28575"),
        observed_at=T0,
        deliveries=[],
    )
    ev = event("0.28600", t1)
    await store.commit_check(
        "timesca",
        state=state,
        validators=Validators(),
        observed=snap(TMT_USD="0.28600"),
        observed_at=t1,
        deliveries=[NewDelivery(ev, sink, "c1") for sink in ("slack", "mail", "quiet")],
    )
    (slack,) = await store.claim("slack", now=t1, limit=1, lease=60, owner="w")
    await store.mark_sent([slack.id], now=t1)
    (mail,) = await store.claim("mail", now=t1, limit=1, lease=60, owner="w")
    await store.mark_dead([mail.id], now=t1, error="550 <no such user>")

    board = Board([target()], started_at=T0)
    board.checked("timesca", at=t1, outcome="observed", error="", state=state)
    view = await build_view(board, store, now=t1 + timedelta(minutes=1), active=always, live=True)

    (tv,) = view.targets
    assert tv.url == "https://example.org/p"  # no credentials, no query
    (pair,) = tv.pairs
    assert (pair.pair, pair.rate) == ("TMT/USD", Decimal("0.28600"))
    assert [str(c.rate) for c in pair.history] == ["0.28575", "0.28600"]
    (alert,) = view.alerts
    assert [(d.sink, d.status) for d in alert.deliveries] == [
        ("slack", "sent"),
        ("mail", "dead"),
        ("quiet", "pending"),
    ]
    assert alert.title.startswith("timesca: TMT/USD ▲ 0.28575 → 0.28600")
    (dead,) = view.dead
    assert dead.deliveries[0].last_error == "550 <no such user>"
    data = view.to_json()
    assert data["targets"][0]["pairs"][0]["rate"] == "0.28600"  # exact, a string
    assert data["ready"] is True

    html = render(view)
    assert "550 &lt;no such user&gt;" in html  # escaped, not markup
    assert "s3cr3t" not in html
    assert "pw@" not in html
    assert "<script" not in html.lower()
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', html)
    assert "ticker-monitor alerts retry " + dead.deliveries[0].short_id in html
    text = render_text(data, t1 + timedelta(minutes=1))
    assert "TMT/USD" in text
    assert "0.28600" in text
    assert "mail: dead" in text


async def test_any_status_the_outbox_holds_is_shown(store: SqliteStore, tmp_path: Path) -> None:
    await store.commit_check(
        "timesca",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=T0,
        deliveries=[NewDelivery(event("0.3", T0), "slack", "c1")],
    )
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute("UPDATE outbox SET status = 'silenced'")
    board = Board([target()], started_at=T0)
    view = await build_view(board, store, now=T0, active=always, live=False)
    assert view.alerts[0].deliveries[0].status == "silenced"
    assert "silenced" in render(view)


async def test_a_store_that_does_not_answer_is_reported_not_waited_for(tmp_path: Path) -> None:
    closed = SqliteStore(tmp_path / "never-opened.db")  # every call is a StoreError
    board = Board([target()], started_at=T0)
    view = await build_view(board, closed, now=T0, active=always, live=True)
    assert not view.store_ok
    assert "store" in view.problems
    assert "store:" in render(view)


def test_relative_times() -> None:
    assert relative(None, T0) == "never"
    assert relative(T0 - timedelta(seconds=12), T0) == "12s ago"
    assert relative(T0 + timedelta(minutes=4, seconds=3), T0) == "in 4m"
    assert relative(T0 - timedelta(days=2, hours=1), T0) == "2d ago"


def test_sparkline_is_a_step_line_in_exact_coordinates() -> None:
    points = [(T0, Decimal("1")), (T0 + timedelta(hours=1), Decimal("3"))]
    svg = sparkline_svg(points, end=T0 + timedelta(hours=2), label="TMT/USD <7d>")
    assert 'aria-label="TMT/USD &lt;7d&gt;"' in svg
    coords = re.search(r'points="([^"]+)"', svg)
    assert coords is not None
    # 120x28 with 3 px padding: starts low-left, steps up at the middle, holds to the end
    assert coords.group(1) == "3.0,25.0 60.0,25.0 60.0,3.0 117.0,3.0"
    assert 'class="up"' in svg
    flat = sparkline_svg([(T0, Decimal("0.5"))], end=T0 + timedelta(hours=1), label="x")
    assert "3.0,14.0 117.0,14.0" in flat
    assert "<polyline" not in sparkline_svg([], end=T0, label="x")


def test_terminal_chart_labels_the_exact_range() -> None:
    rows = [
        Change("t", "TMT/USD", T0, Decimal("0.28575"), None),
        Change("t", "TMT/USD", T0 + timedelta(hours=1), Decimal("0.28650"), None),
    ]
    text = terminal_chart({"t TMT/USD": rows}, end=T0 + timedelta(hours=2), width=20, height=4)
    lines = text.splitlines()
    assert lines[0] == "t TMT/USD: 0.28575 → 0.28650 (2 values)"
    assert lines[1].startswith("0.28650 ┤")
    assert lines[4].startswith("0.28575 ┤")
    assert lines[1].endswith("█" * 10)  # the second half sits at the top
    assert "2025-05-16 08:30" in lines[-1]
