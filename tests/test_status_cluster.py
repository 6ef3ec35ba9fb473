"""What the status shows of the cluster: this instance, the targets it holds, the members with
their last heartbeat, on /readyz, /metrics, the page, ``/api/status`` and ``status`` — and never
the database's URL or password.

Two members are :class:`monitor.cluster.Cluster` objects on one in-memory database, on one clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.app import build_app
from monitor.cli.status import render_text
from monitor.cluster import Cluster, ClusterPolicy, ClusterView
from monitor.daemon import Daemon
from monitor.metrics import Metrics
from monitor.models import Quote, Snapshot, TargetState, Validators
from monitor.owner import Owner
from monitor.settings import Settings, TargetConfig
from monitor.status import Board, StatusService, build_view, readiness
from monitor.statuspage import render
from monitor.store.memory import MemoryDatabase, MemoryStore
from tests.store_backends import Clock

PASSWORD = "Zq9SecretPw"
DSN = f"postgresql://monitor:{PASSWORD}@db.invalid:5432/monitor?sslmode=require"


def config(name: str) -> TargetConfig:
    return TargetConfig(name=name, url=f"http://127.0.0.1/{name}", interval=60, jitter=0)


TARGETS = [config("timesca"), config("other")]


def snapshot(rate: str) -> Snapshot:
    return Snapshot(quotes=(Quote("TMT/USD", "TMT", "USD", Decimal(rate), Decimal("0")),))


async def two_members(clock: Clock) -> tuple[Cluster, Cluster, list[ClusterView]]:
    """a and b, each holding one target; b has checked its own; a's views."""
    database = MemoryDatabase()
    members = []
    for name in ("a", "b"):
        store = MemoryStore(database)
        await store.open()
        member = Cluster(
            store,
            me=Owner(name, 7, "boot", "42"),
            targets=[t.name for t in TARGETS],
            policy=ClusterPolicy(lease=10, forget_after=60),
            clock=clock,
            is_over=lambda _: False,
        )
        await member.join()
        members.append(member)
    a, b = members
    seen: list[ClusterView] = []
    a.on_view = seen.append
    for _ in range(3):
        clock.advance(2.5)
        await a.tick()
        await b.tick()
    assert len(a.held) == len(b.held) == 1
    (theirs,) = b.held
    assert (await b.turn(config(theirs))).check
    await b.store.commit_check(
        theirs,
        state=TargetState(snapshot=snapshot("0.28600"), last_success_at=clock()),
        validators=Validators(),
        observed=snapshot("0.28600"),
        observed_at=clock(),
        deliveries=[],
    )
    clock.advance(1)
    await a.tick()
    return a, b, seen


async def test_readiness_judges_only_the_targets_this_instance_checks() -> None:
    clock = Clock()
    a, _, seen = await two_members(clock)
    board = Board(TARGETS, started_at=clock())
    assert set(readiness(board, clock(), lambda *_: True)) == {"timesca", "other"}
    board.clustered(seen[-1])
    (mine,) = a.held
    assert readiness(board, clock(), lambda *_: True) == {mine: "no successful check yet"}
    board.checked(
        mine,
        at=clock(),
        outcome="observed",
        error="",
        state=TargetState(snapshot=snapshot("0.1"), last_success_at=clock()),
    )
    assert readiness(board, clock(), lambda *_: True) == {}
    service = StatusService(
        board, a.store, clock=clock, active=lambda *_: True, metrics=lambda: b""
    )
    ready, body = service.readiness()
    assert ready
    assert body == {
        "status": "ready",
        "instance": "a/7/boot/42",
        "holds": [mine],
        "members": [
            {"id": "a/7/boot/42", "last_heartbeat": clock().isoformat(), "alive": True},
            {
                "id": "b/7/boot/42",
                "last_heartbeat": (clock() - timedelta(seconds=1)).isoformat(),
                "alive": True,
            },
        ],
    }


async def test_the_view_shows_who_checks_each_target_and_the_members() -> None:
    clock = Clock()
    a, b, seen = await two_members(clock)
    (mine,), (theirs,) = a.held, b.held
    board = Board(TARGETS, started_at=clock())
    board.clustered(seen[-1])
    view = await build_view(board, a.store, now=clock(), active=lambda *_: True, live=True)
    by_name = {t.name: t for t in view.targets}
    assert by_name[mine].checked_by == "a/7/boot/42"
    other = by_name[theirs]
    assert other.checked_by == "b/7/boot/42"
    # b's target as b left it in the store: its quotes, and when b's check began
    assert [(p.pair, p.rate) for p in other.pairs] == [("TMT/USD", Decimal("0.28600"))]
    assert other.last_check_at == clock() - timedelta(seconds=1)
    assert other.next_run is None
    assert view.cluster is seen[-1]

    text = render_text(view.to_json(), clock())
    assert f"instance a/7/boot/42 · checks {mine}" in text
    assert "checked by b/7/boot/42" in text
    assert "cluster (shared store, lease 10s): 2 member(s)" in text
    rows = [line.split() for line in text.splitlines() if "/7/boot/42" in line and "alive" in line]
    assert rows == [
        ["a/7/boot/42", "(this", "one)", "alive", "now", mine],
        ["b/7/boot/42", "alive", "1s", "ago", theirs],
    ]

    page = render(view)
    assert '<section class="card" id="cluster">' in page
    assert "<code>a/7/boot/42</code> (this instance)" in page
    assert "checked by <code>b/7/boot/42</code>" in page


async def test_metrics_name_this_instance_its_targets_and_each_members_heartbeat() -> None:
    clock = Clock()
    a, b, seen = await two_members(clock)
    (mine,), (theirs,) = a.held, b.held
    metrics = Metrics()
    metrics.cluster(seen[-1], [t.name for t in TARGETS])
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert samples[("ticker_monitor_instance_info", (("member", "a/7/boot/42"),))] == 1
    held = "ticker_monitor_cluster_target_held"
    assert samples[(held, (("target", mine),))] == 1
    assert samples[(held, (("target", theirs),))] == 0
    assert samples[("ticker_monitor_cluster_members", (("state", "alive"),))] == 2
    assert samples[("ticker_monitor_cluster_members", (("state", "silent"),))] == 0
    beats = "ticker_monitor_cluster_member_heartbeat_timestamp_seconds"
    assert samples[(beats, (("member", "a/7/boot/42"),))] == clock().timestamp()
    assert samples[(beats, (("member", "b/7/boot/42"),))] == clock().timestamp() - 1


async def test_nothing_the_cluster_adds_shows_the_database_url_or_its_password(
    tmp_path: Path,
) -> None:
    settings = Settings.model_validate(
        {
            "monitor": {"database": DSN, "listen": ""},
            "targets": [t.model_dump() for t in TARGETS],
        }
    )
    clock = Clock(datetime.now(UTC))
    _, _, seen = await two_members(clock)
    app = await build_app(settings, clock=clock)
    daemon = Daemon(app)
    try:
        assert app.cluster.on_view is not None
        app.cluster.on_view(seen[-1])  # as after a heartbeat
        service = daemon.status_service()
        _, ready = service.readiness()
        view = await service.view()  # the store is not open: it says so, without the URL
        shown = [
            repr(ready),
            service.metrics().decode(),
            render(view),
            render_text(view.to_json(), clock()),
            repr(view.to_json()),
            repr(app.store),
        ]
    finally:
        await app.aclose()
    assert not view.store_ok
    for text in shown:
        assert PASSWORD not in text
        assert DSN not in text
