"""The cluster: members sharing targets fairly, taking over a dead member's within 1.5 leases,
never checking a target twice in one interval, and one daemon per SQLite file.

Members are :class:`monitor.cluster.Cluster` objects on the in-memory store (one
``MemoryDatabase`` is one database; each ``MemoryStore`` on it one instance) or on real SQLite
files, with one injected clock: a heartbeat is one call to ``tick()``, so nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.cluster import Cluster, ClusterPolicy, ClusterView, Turn, draw, spacing
from monitor.errors import StoreError
from monitor.models import TargetState
from monitor.owner import Owner
from monitor.settings import TargetConfig
from monitor.store import ClusterStore, Member, TargetLease
from monitor.store.memory import MemoryDatabase, MemoryStore
from monitor.store.sqlite import SqliteStore
from tests.store_backends import Clock

TARGETS = [f"t{n}" for n in range(6)]
POLICY = ClusterPolicy(lease=10.0, forget_after=60.0)


def owner(name: str, pid: int = 1) -> Owner:
    return Owner(name, pid, "boot", str(pid))


def target(name: str, interval: float = 60.0, jitter: float = 0.0) -> TargetConfig:
    return TargetConfig(name=name, url="http://127.0.0.1/", interval=interval, jitter=jitter)


class Members:
    """Members on one in-memory database, all on one clock."""

    def __init__(self, clock: Clock, targets: list[str] = TARGETS) -> None:
        self.clock = clock
        self.database = MemoryDatabase()
        self.targets = targets
        self.acquired: list[tuple[str, str]] = []

    async def member(
        self, name: str, *, is_over: Callable[[str], bool] = lambda _: False
    ) -> Cluster:
        store = MemoryStore(self.database)
        await store.open()
        cluster = Cluster(
            store,
            me=owner(name),
            targets=self.targets,
            policy=POLICY,
            clock=self.clock,
            is_over=is_over,
        )

        def acquired(t: str, _: TargetState) -> None:
            self.acquired.append((name, t))

        cluster.on_acquired = acquired
        await cluster.join()
        return cluster

    async def beat(self, *members: Cluster, seconds: float = POLICY.heartbeat_every) -> None:
        """One heartbeat period: the clock moves, then each member ticks."""
        self.clock.advance(seconds)
        for m in members:
            await m.tick()


def holdings(*members: Cluster) -> dict[str, list[str]]:
    return {m.me.host: sorted(m.held) for m in members}


def assert_each_target_held_once(members: list[Cluster], targets: list[str] = TARGETS) -> None:
    held = [t for m in members for t in m.held]
    assert sorted(held) == sorted(targets), holdings(*members)


async def test_a_lone_member_takes_every_target_and_checks_each_once_per_interval() -> None:
    clock = Clock()
    members = Members(clock)
    a = await members.member("a")
    await a.tick()
    assert sorted(a.held) == TARGETS
    config = target("t0", interval=60)
    assert await a.turn(config) == Turn(check=True)
    clock.advance(30)
    assert await a.turn(config) == Turn(check=False, due_in=30.0)
    clock.advance(30)
    assert await a.turn(config) == Turn(check=True)


async def test_members_share_the_targets_fairly_whoever_started_first() -> None:
    members = Members(Clock())
    a = await members.member("a")
    await a.tick()  # alone: it takes everything
    b = await members.member("b")
    c = await members.member("c")
    await members.beat(b, c)  # nothing is free yet
    assert holdings(a, b, c) == {"a": TARGETS, "b": [], "c": []}
    await members.beat(a, b, c)  # a sees three members: it hands four over; b and c take two each
    await members.beat(a, b, c)
    assert [len(m.held) for m in (a, b, c)] == [2, 2, 2]
    assert_each_target_held_once([a, b, c])
    for _ in range(5):  # and it stays so
        await members.beat(a, b, c)
        assert [len(m.held) for m in (a, b, c)] == [2, 2, 2]


async def test_a_dead_members_targets_are_taken_over_within_one_and_a_half_leases() -> None:
    clock = Clock()
    members = Members(clock)
    a, b, c = [await members.member(n) for n in "abc"]
    for _ in range(3):
        await members.beat(a, b, c)
    dead = sorted(c.held)
    assert len(dead) == 2
    died = clock()
    taken_at = None
    while taken_at is None:  # c is SIGKILLed: it never ticks again
        await members.beat(a, b, seconds=0.5)
        if all(t in a.held | b.held for t in dead):
            taken_at = clock()
        assert (clock() - died).total_seconds() <= POLICY.takeover + 0.5
    assert (taken_at - died).total_seconds() <= POLICY.takeover
    assert_each_target_held_once([a, b])
    assert sorted(len(m.held) for m in (a, b)) == [3, 3]


@pytest.mark.parametrize(
    ("interval", "first_turn"),
    [
        (60.0, Turn(check=False, due_in=50.0)),  # at the last check + 60 s, not now
        (5.0, Turn(check=True)),  # overdue: at once
    ],
)
async def test_a_takeover_checks_at_the_last_check_plus_the_interval_never_twice(
    interval: float, first_turn: Turn
) -> None:
    clock = Clock()
    members = Members(clock, ["t0"])
    a = await members.member("a")
    await a.tick()
    config = target("t0", interval=interval)
    assert await a.turn(config) == Turn(check=True)  # a checks at T0, then dies
    b = await members.member("b")
    await b.tick()
    assert b.held == set()  # a's lease is live
    clock.advance(POLICY.lease)
    await b.tick()
    assert b.held == {"t0"}
    assert ("b", "t0") in members.acquired
    assert await b.turn(config) == first_turn
    if not first_turn.check:
        clock.advance(50)
        assert await b.turn(config) == Turn(check=True)


async def test_leaving_hands_everything_over_at_once() -> None:
    members = Members(Clock())
    a, b = await members.member("a"), await members.member("b")
    for _ in range(3):
        await members.beat(a, b)
    assert [len(m.held) for m in (a, b)] == [3, 3]
    await a.leave()
    await b.tick()  # no lease to wait for: b alone, below its share, takes everything now
    assert sorted(b.held) == TARGETS
    assert [m.id for m in await b.store.members()] == [str(b.me)]


async def test_a_member_that_lost_its_leases_while_cut_off_gives_them_up_and_rejoins() -> None:
    members = Members(Clock())
    a, b = await members.member("a"), await members.member("b")
    for _ in range(3):
        await members.beat(a, b)
    a_had = sorted(a.held)
    # a cannot reach the store for two minutes: b takes over, then forgets it (silent for
    # forget_after, as b finds at its once-a-minute look)
    for _ in range(48):
        await members.beat(b)
    assert sorted(b.held) == TARGETS
    assert [m.id for m in await b.store.members()] == [str(b.me)]
    with capture_logs() as logs:
        await a.tick()
    events = [e["event"] for e in logs]
    assert "cluster_rejoined" in events
    assert [e["target"] for e in logs if e["event"] == "target_lost"] == a_had
    assert a.held == set()
    assert await a.turn(target(a_had[0])) == Turn(check=False, owner=str(b.me))
    for _ in range(3):  # and the two share again
        await members.beat(a, b)
    assert [len(m.held) for m in (a, b)] == [3, 3]


async def test_a_turn_that_finds_the_lease_taken_gives_the_target_up() -> None:
    clock = Clock()
    members = Members(clock, ["t0"])
    a = await members.member("a")
    await a.tick()
    clock.advance(POLICY.lease)  # a missed its renewals; b took the target
    other = MemoryStore(members.database)
    await other.open()
    assert await other.acquire_target("t0", owner="b", lease=10, now=clock()) is not None
    assert await a.turn(target("t0")) == Turn(check=False)
    assert a.held == set()


async def test_join_gives_back_at_once_what_an_ended_life_of_this_host_held() -> None:
    clock = Clock()
    members = Members(clock)
    old = await members.member("a")
    await old.tick()
    assert len(old.held) == 6  # then it is SIGKILLed
    reborn = await members.member("a2", is_over=lambda m: m == str(old.me))
    assert [m.id for m in await reborn.store.members()] == [str(reborn.me)]
    await reborn.tick()  # without waiting for the old leases to lapse
    assert sorted(reborn.held) == TARGETS


async def test_the_view_shows_members_with_their_heartbeats_and_targets() -> None:
    clock = Clock()
    members = Members(clock)
    seen: list[ClusterView] = []
    a, b = await members.member("a"), await members.member("b")
    a.on_view = seen.append
    for _ in range(3):
        await members.beat(a, b)
    view = seen[-1]
    assert view.me == str(a.me)
    assert view.held == tuple(sorted(a.held))
    assert [(m.id, m.alive, m.targets) for m in view.members] == [
        (str(a.me), True, tuple(sorted(a.held))),
        (str(b.me), True, tuple(sorted(b.held))),
    ]
    # a drew it at its heartbeat, just before b's of the same round
    assert [m.last_heartbeat for m in view.members] == [
        clock(),
        clock() - timedelta(seconds=POLICY.heartbeat_every),
    ]
    assert {view.owners[t] for t in TARGETS} == {str(a.me), str(b.me)}
    assert not view.single_daemon


# --- one daemon per SQLite file -------------------------------------------------------------------


async def sqlite_member(path: Path, clock: Clock, name: str) -> Cluster:
    store: ClusterStore = SqliteStore(path)
    await store.open()
    return Cluster(
        store, me=owner(name), targets=TARGETS, policy=POLICY, clock=clock, is_over=lambda _: False
    )


async def test_a_second_daemon_on_one_sqlite_file_is_refused_in_one_line(tmp_path: Path) -> None:
    clock = Clock()
    db = tmp_path / "state.db"
    first = await sqlite_member(db, clock, "a")
    second = await sqlite_member(db, clock, "b")
    try:
        await first.join()
        clock.advance(3)
        with pytest.raises(StoreError) as refused:
            await second.join()
        message = str(refused.value)
        assert "\n" not in message
        assert message == (
            f"another daemon uses this SQLite database ({first.me}, last heartbeat 3s ago): "
            "SQLite serves one daemon at a time; stop it first (a daemon silent for 10s counts "
            "as gone), or use PostgreSQL to run several"
        )
        assert [m.id for m in await second.store.members()] == [str(first.me)]
        await first.leave()  # once the first has stopped, the second starts
        await second.join()
        await second.tick()
        assert sorted(second.held) == TARGETS
    finally:
        await first.store.aclose()
        await second.store.aclose()


async def test_a_silent_daemon_on_a_sqlite_file_no_longer_blocks_and_two_alive_are_warned(
    tmp_path: Path,
) -> None:
    clock = Clock()
    db = tmp_path / "state.db"
    first = await sqlite_member(db, clock, "a")
    second = await sqlite_member(db, clock, "b")
    try:
        await first.join()
        clock.advance(POLICY.lease + 1)  # the first went silent (stopped, or its host is gone)
        await second.join()
        await first.tick()  # ... and comes back: both say so, once
        with capture_logs() as logs:
            await second.tick()
            await second.tick()
        warned = [e for e in logs if e["event"] == "sqlite_shared_by_daemons"]
        assert [(e["other"], e["log_level"]) for e in warned] == [(str(first.me), "error")]
    finally:
        await first.store.aclose()
        await second.store.aclose()


# --- the spacing of checks ----------------------------------------------------------------------


@given(
    interval=st.floats(min_value=1, max_value=86400),
    share=st.floats(min_value=0, max_value=0.99),
)
def test_two_checks_are_spaced_by_the_interval_less_half_the_jitter_and_a_little_slack(
    interval: float, share: float
) -> None:
    config = target("t", interval=interval, jitter=interval * share)
    gap = spacing(config)
    nominal = interval - config.effective_jitter / 2
    assert nominal - min(interval / 10, 1.0) - 1e-9 <= gap <= nominal
    assert gap > 0


def test_a_target_every_second_without_jitter_is_spaced_by_nine_tenths_of_a_second() -> None:
    assert spacing(target("t", interval=1)) == pytest.approx(0.9)
    assert spacing(target("t", interval=300, jitter=30)) == pytest.approx(284.0)


@given(
    owners=st.lists(st.sampled_from(["me", "other", "gone"]), min_size=0, max_size=40),
    me=st.sampled_from(["me", "other", ""]),
)
def test_a_view_holds_exactly_what_it_lists_as_held(owners: list[str], me: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    leases = [
        TargetLease(f"t{i}", owner, until=now + timedelta(seconds=-1 if owner == "gone" else 10))
        for i, owner in enumerate(owners)
    ]
    members = [Member(m, "h", 1, now, now) for m in ("me", "other")]
    view = draw(me, members, leases, now=now, lease=10.0, single_daemon=False)
    for i, owner in enumerate(owners):
        assert view.holds(f"t{i}") == (f"t{i}" in view.held) == (owner == me)
    assert not view.holds("not-a-target")
