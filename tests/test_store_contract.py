"""The store contract: what every backend (memory, SQLite, PostgreSQL) does, one test for all.

State and history, the one-transaction commit, the outbox (dedup keys, strict per-sink claims with
leases, marks, release, requeue, next_due, retention, listings), the schema and its migrations,
and the cluster primitives, with two instances (two store objects on one database) racing.
Backend-specific behaviour lives in ``test_store.py`` (SQLite files) and
``test_store_postgres.py`` (the server: its clock, TLS, errors without secrets).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.models import (
    Alarm,
    Event,
    EventKind,
    NewDelivery,
    Quote,
    Reading,
    Silence,
    Snapshot,
    TargetState,
    Validators,
)
from monitor.store import (
    CheckCommit,
    CheckTurn,
    ClusterStore,
    Member,
    OutboxCounts,
    OutboxRow,
    TargetLease,
)
from monitor.store.sqlite import SCHEMA_VERSION
from tests.store_backends import (
    BACKENDS,
    SCHEMA_BACKENDS,
    T0,
    Backend,
    Clock,
    backend_for,
    backend_params,
)


def event(n: int, *, target: str = "timesca") -> Event:
    return Event(
        kind=EventKind.RATE_CHANGED,
        target=target,
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal(f"0.2857{n}"), Decimal("-0.14")),
        observed_at=T0,
    )


def delivery(n: int, sink: str = "slack", check_id: str = "check-1") -> NewDelivery:
    return NewDelivery(event=event(n), sink=sink, check_id=check_id)


def snapshot(rate: str = "0.28575") -> Snapshot:
    return Snapshot(quotes=(Quote("TMT/USD", "TMT", "USD", Decimal(rate), Decimal("-0.14")),))


@pytest.fixture(params=backend_params(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend_for(request.param, tmp_path) as made:
        yield made


@pytest.fixture(params=backend_params(SCHEMA_BACKENDS))
async def schema_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends with a schema (versions, migrations)."""
    async with backend_for(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def clock(backend: Backend) -> Clock:
    return backend.clock


@pytest.fixture
async def store(backend: Backend) -> ClusterStore:
    made = backend.store()
    await made.open()
    return made  # closed by the backend's cleanup


async def opened(backend: Backend) -> ClusterStore:
    made = backend.store()
    await made.open()
    return made


async def commit(
    store: ClusterStore,
    clock: Clock,
    deliveries: list[NewDelivery],
    *,
    target: str = "timesca",
    state: TargetState | None = None,
    observed: Snapshot | None = None,
) -> int:
    """Commit a check observed now (as the checker does: ``observed_at`` is the clock's now)."""
    return await store.commit_check(
        target,
        state=state or TargetState(),
        validators=Validators(),
        observed=observed,
        observed_at=clock(),
        deliveries=deliveries,
    )


async def claim(
    store: ClusterStore, clock: Clock, owner: str = "w", *, limit: int = 10, lease: float = 60
) -> list[int]:
    """Claim slack rows now; their ids."""
    rows = await store.claim("slack", now=clock(), limit=limit, lease=lease, owner=owner)
    return [d.id for d in rows]


async def rows(store: ClusterStore, status: str | None = None) -> dict[int, OutboxRow]:
    return {int(str(r.id)): r for r in await store.outbox_rows(status=status, limit=1000)}


async def ids_of(store: ClusterStore, *ns: int) -> list[int]:
    """The outbox ids of deliveries ``ns`` (as numbered by :func:`delivery`)."""
    by_key = {r.dedup_key: i for i, r in (await rows(store)).items()}
    return [by_key[delivery(n).dedup_key] for n in ns]


# --- state and commit_check ---------------------------------------------------------------------


async def test_an_unknown_target_has_a_fresh_state(store: ClusterStore) -> None:
    assert await store.load_target("never-seen") == (TargetState(), Validators())


async def test_commit_check_writes_state_validators_history_and_outbox(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    state = TargetState(
        snapshot=snapshot(),
        last_success_at=T0,
        alarms={"r|TMT/USD|above": Alarm(since=T0, fired_at=T0, notified=True, reminders=2)},
        failing_since=None,
        parse_failing_since=T0,
        last_alerted={"r|TMT/USD": Decimal("0.28575")},
        last_routed={"r|TMT/USD": T0},
    )
    inserted = await store.commit_check(
        "timesca",
        state=state,
        validators=Validators(etag='W/"abc"', last_modified="Fri, 16 May 2025 08:00:00 GMT"),
        observed=snapshot(),
        observed_at=T0,
        deliveries=[delivery(1), delivery(1, sink="email"), delivery(2)],
    )
    assert inserted == 3
    loaded, validators = await store.load_target("timesca")
    assert loaded == state
    assert validators == Validators('W/"abc"', "Fri, 16 May 2025 08:00:00 GMT")
    assert await backend.observations() == [("timesca", T0, snapshot())]
    claimed = await store.claim("slack", now=T0, limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(1), event(2)]
    assert claimed[0].created_at == T0  # exact to the microsecond, aware UTC
    assert claimed[0].created_at.utcoffset() == timedelta(0)
    assert claimed[0].check_id == "check-1"
    assert claimed[0].attempts == 0
    assert claimed[0].sink == "slack"


async def test_a_commit_without_a_snapshot_writes_no_history(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1)], state=TargetState(consecutive_failures=1))
    assert await backend.observations() == []
    assert (await store.load_target("timesca"))[0].consecutive_failures == 1


async def test_commit_check_is_all_or_nothing(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    before = TargetState(consecutive_failures=1, snapshot=snapshot("0.1"))
    await commit(store, clock, [delivery(1)], state=before, observed=snapshot("0.1"))
    clock.advance(60)
    bad = NewDelivery(event=event(3), sink="slack", check_id=None)  # type: ignore[arg-type]
    after = TargetState(consecutive_failures=0, snapshot=snapshot("0.2"))
    with pytest.raises(StoreError, match="commit_check"):
        await commit(store, clock, [delivery(2), bad], state=after, observed=snapshot("0.2"))
    assert (await store.load_target("timesca"))[0] == before
    assert [r.dedup_key for r in (await rows(store)).values()] == [delivery(1).dedup_key]
    assert len(await backend.observations()) == 1
    # and the store still works afterwards
    assert await commit(store, clock, [delivery(2)], state=after) == 1


async def test_commit_checks_writes_each_check_as_commit_check_does(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    at = clock()
    commits = [
        CheckCommit(
            f"t{n}",
            TargetState(snapshot=snapshot(f"0.{n}")),
            Validators(etag=f'"e{n}"'),
            snapshot(f"0.{n}"),
            at,
            [NewDelivery(event=event(n, target=f"t{n}"), sink="slack", check_id=f"c{n}")],
        )
        for n in range(1, 4)
    ]
    assert await store.commit_checks(commits) == [1, 1, 1]
    for n in range(1, 4):
        state, validators = await store.load_target(f"t{n}")
        assert state.snapshot == snapshot(f"0.{n}")
        assert validators == Validators(etag=f'"e{n}"')
    assert sorted(t for t, _, _ in await backend.observations()) == ["t1", "t2", "t3"]
    assert len(await rows(store)) == 3
    assert await store.commit_checks(commits[:1]) == [0]  # the same rows again: deduplicated
    assert await store.commit_checks([]) == []


async def test_a_failing_check_in_commit_checks_is_rolled_back_alone(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    """Group commit loses nothing: the check whose writes fail keeps its old state and writes no
    row (its next check finds the change again); the checks around it are written."""
    before = TargetState(consecutive_failures=1, snapshot=snapshot("0.1"))
    await commit(store, clock, [], target="bad", state=before, observed=snapshot("0.1"))
    at = clock.advance(60)
    good = [
        CheckCommit(
            f"t{n}",
            TargetState(snapshot=snapshot("0.2")),
            Validators(),
            snapshot("0.2"),
            at,
            [NewDelivery(event=event(n, target=f"t{n}"), sink="slack", check_id=f"c{n}")],
        )
        for n in (1, 2)
    ]
    # after the state and the history row, its second outbox row cannot be written
    broken = NewDelivery(event=event(9, target="bad"), sink="slack", check_id=None)  # type: ignore[arg-type]
    bad = CheckCommit(
        "bad",
        TargetState(snapshot=snapshot("0.2")),
        Validators(),
        snapshot("0.2"),
        at,
        [NewDelivery(event=event(8, target="bad"), sink="slack", check_id="c8"), broken],
    )
    first, failed, last = await store.commit_checks([good[0], bad, good[1]])
    assert (first, last) == (1, 1)
    assert isinstance(failed, StoreError)
    assert "commit_check" in str(failed)
    assert (await store.load_target("bad"))[0] == before
    assert (await store.load_target("t1"))[0].snapshot == snapshot("0.2")
    assert (await store.load_target("t2"))[0].snapshot == snapshot("0.2")
    assert sorted(r.target for r in (await rows(store)).values()) == ["t1", "t2"]
    assert sorted(t for t, _, _ in await backend.observations()) == ["bad", "t1", "t2"]
    # and the store goes on: the check's next try is written whole
    assert await store.commit_checks([replace(bad, deliveries=bad.deliveries[:1])]) == [1]
    assert (await store.load_target("bad"))[0].snapshot == snapshot("0.2")


async def test_the_same_delivery_twice_is_one_row(store: ClusterStore, clock: Clock) -> None:
    assert await commit(store, clock, [delivery(1), delivery(1)]) == 1
    assert await commit(store, clock, [delivery(1)]) == 0
    assert await commit(store, clock, [delivery(1, sink="email")]) == 1
    assert await store.outbox_counts() == [
        OutboxCounts("email", "pending", 1),
        OutboxCounts("slack", "pending", 1),
    ]


async def test_another_store_on_the_same_database_sees_the_data(
    backend: Backend, clock: Clock
) -> None:
    first = await opened(backend)
    await commit(first, clock, [delivery(1)], state=TargetState(consecutive_failures=2))
    await first.aclose()
    second = await opened(backend)  # no migration runs again, nothing is recreated
    assert (await second.load_target("timesca"))[0].consecutive_failures == 2
    assert await second.outbox_counts() == [OutboxCounts("slack", "pending", 1)]


async def test_calls_before_open_and_after_close_are_store_errors(backend: Backend) -> None:
    s = backend.store()
    with pytest.raises(StoreError, match=r"^load_target: the store is not open$"):
        await s.load_target("x")
    await s.open()
    await s.open()  # opening twice is harmless
    await s.aclose()
    with pytest.raises(StoreError, match=r"^next_due: the store is (closed|not open)$"):
        await s.next_due("slack")
    await s.aclose()  # and so is closing twice


# --- claims and leases --------------------------------------------------------------------------


async def test_claim_is_strict_order_behind_a_backing_off_head(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)])
    (head,) = await claim(store, clock, limit=1)
    later = T0 + timedelta(seconds=30)
    await store.mark_retry([head], now=clock(), next_attempt_at=later, error="503")
    # rows 2 and 3 are due, but the head is not: nothing goes out of order
    clock.advance(29)
    assert await claim(store, clock) == []
    assert await store.next_due("slack") == later
    clock.now = later
    claimed = await store.claim("slack", now=clock(), limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(1), event(2), event(3)]
    assert claimed[0].attempts == 1
    assert await store.claim("email", now=clock(), limit=10, lease=60, owner="w") == []


async def test_leases_block_other_owners_until_they_lapse(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)])
    one, two, three = await ids_of(store, 1, 2, 3)
    assert await claim(store, clock, "A", limit=2) == [one, two]
    # B sees a head leased by A: nothing
    assert await claim(store, clock, "B") == []
    assert await store.next_due("slack") == T0 + timedelta(seconds=60)
    # A may re-claim its own rows (and now row 3 as well)
    assert await claim(store, clock, "A") == [one, two, three]
    clock.advance(59.999999)
    assert await claim(store, clock, "B") == []
    # A crashes. Once its lease lapses, B takes the rows over (the crash-recovery path).
    clock.now = T0 + timedelta(seconds=60)
    assert await claim(store, clock, "B") == [one, two, three]
    assert {r.lease_owner for r in (await rows(store)).values()} == {"B"}


async def test_a_claim_stops_at_the_first_row_leased_by_another(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)])
    one, _, _ = await ids_of(store, 1, 2, 3)
    await claim(store, clock, "A", limit=2)
    await store.release([one])  # row 1 free again, row 2 still A's, row 3 free
    assert await claim(store, clock, "B") == [one]


async def test_a_claim_takes_at_most_limit_rows_oldest_first(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(n) for n in range(1, 6)])
    everything = await ids_of(store, 1, 2, 3, 4, 5)
    assert await claim(store, clock, "A", limit=2) == everything[:2]
    assert await claim(store, clock, "A", limit=0) == []
    assert await claim(store, clock, "A", limit=10) == everything


async def test_an_owner_releases_only_the_rows_it_still_holds(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2)])
    one, two = await claim(store, clock, "A", lease=15)
    clock.advance(15)  # A's lease lapsed; B took the rows over and is sending them
    assert await claim(store, clock, "B") == [one, two]
    await store.release([one, two], owner="A")  # A, late, gives back what it no longer holds
    assert {r.lease_owner for r in (await rows(store)).values()} == {"B"}
    assert await claim(store, clock, "C") == []
    await store.release([one], owner="B")
    assert (await rows(store))[one].lease_owner is None
    assert (await rows(store))[two].lease_owner == "B"


async def test_the_leases_of_lives_known_to_be_over_are_given_back_at_once(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)])
    one, two, three = await ids_of(store, 1, 2, 3)
    assert await claim(store, clock, "host/1/boot/5", limit=1) == [one]
    await store.mark_sent([one], now=clock())  # finished rows hold no lease
    assert await claim(store, clock, "host/2/boot/5", limit=1) == [two]
    assert await store.lease_owners() == ["host/2/boot/5"]
    assert await store.release_leases_of([]) == 0
    assert await store.release_leases_of(["host/9/boot/5"]) == 0
    assert await store.release_leases_of(["host/2/boot/5"]) == 1
    assert await store.lease_owners() == []
    # the row is free at once: another owner takes it without waiting for the lease to lapse
    assert await claim(store, clock, "host/3/boot/5") == [two, three]


async def test_release_gives_rows_back_without_counting_an_attempt(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1)])
    await store.release(await claim(store, clock, "A"))
    b = await store.claim("slack", now=clock(), limit=10, lease=60, owner="B")
    assert [d.attempts for d in b] == [0]
    await store.release([])  # nothing to release is fine


async def test_an_unreadable_row_is_dead_lettered_not_blocking(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2)])
    one, two = await ids_of(store, 1, 2)
    await backend.corrupt_event(one)
    claimed = await store.claim("slack", now=clock(), limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(2)]
    dead = await rows(store, "dead")
    assert list(dead) == [one]
    assert "unreadable" in str(dead[one].last_error)
    assert dead[one].event is None  # listed all the same
    assert (await rows(store))[two].lease_owner == "w"


# --- marks --------------------------------------------------------------------------------------


async def test_mark_transitions(store: ClusterStore, clock: Clock) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3), delivery(4)])
    ids = await claim(store, clock)
    t1 = clock.advance(5)
    await store.mark_sent([ids[0]], now=t1)
    await store.mark_retry(
        [ids[1]], now=t1, next_attempt_at=t1 + timedelta(seconds=10), error="503", memo="rcpt:a"
    )
    await store.mark_retry(
        [ids[1]], now=t1, next_attempt_at=t1 + timedelta(seconds=20), error="503 again"
    )
    await store.mark_dead([ids[2]], now=t1, error="404 no such webhook")
    await store.release([ids[3]])
    r = await rows(store)
    assert r[ids[0]].status == "sent"
    assert r[ids[0]].sent_at == t1
    assert r[ids[0]].updated_at == t1
    assert r[ids[0]].lease_owner is None
    assert r[ids[1]].status == "pending"
    assert r[ids[1]].attempts == 2
    assert r[ids[1]].next_attempt_at == t1 + timedelta(seconds=20)
    assert r[ids[1]].last_error == "503 again"
    assert r[ids[1]].memo == "rcpt:a"  # a retry without a memo keeps the sink's progress
    assert r[ids[1]].lease_until is None
    assert r[ids[2]].status == "dead"
    assert r[ids[2]].attempts == 1
    assert r[ids[2]].last_error == "404 no such webhook"
    assert r[ids[3]].status == "pending"
    assert r[ids[3]].attempts == 0
    assert r[ids[3]].lease_owner is None
    # final states are final
    await store.mark_retry([ids[0]], now=t1, next_attempt_at=t1, error="late")
    await store.mark_sent([ids[2]], now=t1)
    await store.mark_dead([ids[0]], now=t1, error="late")
    r2 = await rows(store)
    assert r2[ids[0]].status == "sent"
    assert r2[ids[0]].attempts == 0
    assert r2[ids[2]].status == "dead"
    assert await store.outbox_counts() == [
        OutboxCounts("slack", "dead", 1),
        OutboxCounts("slack", "pending", 2),
        OutboxCounts("slack", "sent", 1),
    ]
    assert await store.sinks_with_pending() == ["slack"]
    # no ids: nothing happens
    await store.mark_sent([], now=t1)
    await store.mark_retry([], now=t1, next_attempt_at=t1, error="x")
    await store.mark_dead([], now=t1, error="x")
    assert await rows(store) == r2


async def test_next_due_is_none_when_nothing_is_pending(store: ClusterStore, clock: Clock) -> None:
    assert await store.next_due("slack") is None
    await commit(store, clock, [delivery(1)])
    assert await store.next_due("slack") == T0
    (row,) = await claim(store, clock)
    assert await store.next_due("slack") == T0 + timedelta(seconds=60)  # the lease's end
    await store.mark_sent([row], now=clock())
    assert await store.next_due("slack") is None
    assert await store.sinks_with_pending() == []


async def test_outbox_rows_filter_newest_first(store: ClusterStore, clock: Clock) -> None:
    await commit(store, clock, [delivery(1), delivery(2)])
    one, two = await ids_of(store, 1, 2)
    await store.claim("slack", now=clock(), limit=1, lease=60, owner="w")
    await store.mark_dead([one], now=clock(), error="gone")
    listed = await store.outbox_rows()
    assert [r.id for r in listed] == [two, one]  # newest first
    first = listed[0]
    assert first.short_id == delivery(2).dedup_key[:8]
    assert first.dedup_key == delivery(2).dedup_key
    assert first.sink == "slack"
    assert first.target == "timesca"
    assert first.check_id == "check-1"
    assert first.created_at == T0
    assert (first.lease_owner, first.silenced_by, first.memo) == (None, None, None)
    assert first.event is not None
    assert first.event.kind is EventKind.RATE_CHANGED
    assert first.event.new is not None
    assert str(first.event.new.rate) == "0.28572"  # a decimal stays the page's text
    assert [r.id for r in await store.outbox_rows(status="dead")] == [one]
    await store.claim("slack", now=clock(), limit=1, lease=60, owner="w")  # now the other one
    claimed = await rows(store, "pending")
    assert claimed[two].lease_owner == "w"
    assert claimed[two].lease_until == T0 + timedelta(seconds=60)
    assert len(await store.outbox_rows(limit=1)) == 1
    assert await store.outbox_rows(status="lost") == []  # a status no row has


async def test_outbox_rows_filter_by_status_time_and_short_id(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2)])
    clock.advance(2 * 3600)
    await commit(store, clock, [delivery(3)], observed=snapshot())
    one, two, three = await ids_of(store, 1, 2, 3)
    await store.claim("slack", now=clock(), limit=1, lease=60, owner="w")
    await store.mark_dead([one], now=clock(), error="404 no_service")

    listed = await store.outbox_rows()
    assert [(r.id, r.status) for r in listed] == [
        (three, "pending"),
        (two, "pending"),
        (one, "dead"),
    ]
    assert listed[2].last_error == "404 no_service"
    assert listed[2].attempts == 1
    assert listed[2].event == event(1)
    assert listed[2].created_at == T0
    assert listed[0].short_id == delivery(3).dedup_key[:8]
    assert [r.id for r in await store.outbox_rows(status="dead")] == [one]
    assert await store.outbox_rows(status="lost") == []  # any status string: none matches
    assert [r.id for r in await store.outbox_rows(since=T0 + timedelta(hours=1))] == [three]
    assert [r.id for r in await store.outbox_rows(key_prefix=listed[1].short_id)] == [two]
    assert [r.id for r in await store.outbox_rows(key_prefix=delivery(1).dedup_key)] == [one]
    assert await store.outbox_rows(key_prefix="%") == []  # a prefix, not a pattern
    assert await store.outbox_rows(key_prefix="_") == []
    assert [r.id for r in await store.outbox_rows(limit=1)] == [three]


async def test_history_is_oldest_first_per_target_and_since(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [], observed=snapshot("0.28575"))
    t1 = clock.advance(3600)
    await commit(store, clock, [], observed=snapshot("0.1"), target="other")
    t2 = clock.advance(3600)
    await commit(store, clock, [], observed=snapshot("0.28600"))
    clock.advance(3600)
    await commit(store, clock, [])  # a check without an observation
    got = await store.history(target="timesca")
    assert [(o.observed_at, o.snapshot) for o in got] == [
        (T0, snapshot("0.28575")),
        (t2, snapshot("0.28600")),
    ]
    assert [o.target for o in await store.history()] == ["timesca", "other", "timesca"]
    assert [o.observed_at for o in await store.history(since=t1)] == [t1, t2]
    assert await store.history(target="nobody") == []


async def test_history_latest_is_the_newest_rows_still_oldest_first(
    store: ClusterStore, clock: Clock
) -> None:
    times = []
    for n in range(5):
        times.append(clock())
        await commit(store, clock, [], observed=snapshot(f"0.2857{n}"))
        await commit(store, clock, [], observed=snapshot(f"0.{n}"), target="other")
        clock.advance(60)
    newest = await store.history(target="timesca", latest=2)
    assert [(o.target, o.observed_at) for o in newest] == [("timesca", t) for t in times[3:]]
    assert [o.snapshot for o in newest] == [snapshot("0.28573"), snapshot("0.28574")]
    since = await store.history(target="timesca", since=times[1], latest=10)
    assert [o.observed_at for o in since] == times[1:]  # fewer rows than asked for: all of them
    assert await store.history(target="timesca", latest=0) == []
    assert [o.target for o in await store.history(latest=3)] == ["other", "timesca", "other"]


async def test_latest_history_is_each_targets_newest_rows_in_one_call(
    store: ClusterStore, clock: Clock
) -> None:
    times = []
    for n in range(5):
        times.append(clock())
        await commit(store, clock, [], observed=snapshot(f"0.2857{n}"))
        if n % 2 == 0:
            await commit(store, clock, [], observed=snapshot(f"0.{n}"), target="other")
        await commit(store, clock, [], observed=snapshot(f"0.9{n}"), target="unasked")
        clock.advance(60)
    got = await store.latest_history(["timesca", "other", "nobody"], latest=2)
    assert set(got) == {"timesca", "other", "nobody"}  # every target asked for, no other
    assert [(o.target, o.observed_at, o.snapshot) for o in got["timesca"]] == [
        ("timesca", times[3], snapshot("0.28573")),
        ("timesca", times[4], snapshot("0.28574")),
    ]
    assert [o.observed_at for o in got["other"]] == [times[2], times[4]]
    assert got["nobody"] == []
    # the same rows as history(target=..., since=..., latest=...) of each target
    for since, latest in ((None, 10), (times[1], 10), (times[1], 3), (None, 0)):
        batched = await store.latest_history(["other", "timesca"], since=since, latest=latest)
        for name in ("timesca", "other"):
            one = await store.history(target=name, since=since, latest=latest)
            assert batched[name] == one, (name, since, latest)
    assert await store.latest_history([], latest=5) == {}
    assert list(await store.latest_history(["other", "other"], latest=1)) == ["other"]


async def test_latest_history_keeps_the_newest_of_rows_at_one_instant(
    store: ClusterStore, clock: Clock
) -> None:
    for n in range(3):  # three checks recorded at the same instant: the later insert is newer
        await commit(store, clock, [], observed=snapshot(f"0.2857{n}"))
    got = await store.latest_history(["timesca"], latest=2)
    assert [o.snapshot for o in got["timesca"]] == [snapshot("0.28571"), snapshot("0.28572")]
    assert got["timesca"] == await store.history(target="timesca", latest=2)


async def test_requeue_revives_only_dead_rows(store: ClusterStore, clock: Clock) -> None:
    await commit(store, clock, [delivery(1), delivery(2)])
    first, second = await claim(store, clock, limit=2)
    await store.mark_dead([first], now=clock(), error="404 no_service")
    await store.mark_sent([second], now=clock())
    later = clock.advance(3 * 86400)
    assert await store.requeue([first, second, 999_999], now=later) == 1
    r = await rows(store)
    assert r[first].status == "pending"
    assert r[first].attempts == 0
    assert r[first].created_at == later  # max_age counts from the re-queue
    assert r[first].next_attempt_at == later
    assert r[first].lease_owner is None
    assert r[second].status == "sent"
    assert await claim(store, clock, "w2", limit=5) == [first]
    assert await store.requeue([], now=later) == 0


# --- retention ----------------------------------------------------------------------------------


async def test_expire_history_deletes_old_observations_and_finished_rows(
    backend: Backend, store: ClusterStore, clock: Clock
) -> None:
    old = clock()
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)], observed=snapshot())
    clock.advance(3600)
    await commit(store, clock, [], observed=snapshot("0.3"))
    new = clock.now = old + timedelta(days=40)
    await commit(store, clock, [delivery(4)], observed=snapshot("0.4"))
    sent, dead = await claim(store, clock, limit=2)
    await store.mark_sent([sent], now=clock())
    await store.mark_dead([dead], now=clock(), error="x")
    # 2 old observations + 1 sent + 1 dead; the old *pending* row 3 is never deleted
    assert await store.expire_history(new - timedelta(days=30)) == 4
    assert [at for _, at, _ in await backend.observations()] == [new]
    assert [
        str(r.event.new.rate) for r in (await rows(store)).values() if r.event and r.event.new
    ] == [
        "0.28574",
        "0.28573",
    ]
    assert await store.expire_history(new - timedelta(days=30)) == 0
    assert (await store.load_target("timesca"))[0] == TargetState()  # state is never expired


# --- crashes ------------------------------------------------------------------------------------


async def test_rows_committed_before_a_crash_are_deliverable_after_it(
    backend: Backend, clock: Clock
) -> None:
    crashed = await opened(backend)
    await commit(crashed, clock, [delivery(1), delivery(2)], observed=snapshot())
    # the first worker claims the head and "dies" mid-send: no mark, no release, no close
    await claim(crashed, clock, "dead-worker", limit=1)

    revived = await opened(backend)
    assert (await revived.load_target("timesca"))[0] == TargetState()
    assert await revived.outbox_counts() == [OutboxCounts("slack", "pending", 2)]
    assert await claim(revived, clock, "new") == []
    clock.advance(61)
    claimed = await revived.claim("slack", now=clock(), limit=10, lease=60, owner="new")
    assert [d.event for d in claimed] == [event(1), event(2)]
    await revived.mark_sent([d.id for d in claimed], now=clock())
    assert await revived.outbox_counts() == [OutboxCounts("slack", "sent", 2)]


# --- schema and migrations ----------------------------------------------------------------------


async def test_a_fresh_database_gets_the_whole_schema(schema_backend: Backend) -> None:
    s = await opened(schema_backend)
    assert await schema_backend.schema_version() == SCHEMA_VERSION
    assert {"targets", "observations", "outbox", "instances", "target_leases"} <= (
        await schema_backend.tables()
    )
    await s.aclose()
    await opened(schema_backend)  # opening it again migrates nothing
    assert await schema_backend.schema_version() == SCHEMA_VERSION


async def test_a_database_at_an_older_version_is_migrated_keeping_its_data(
    schema_backend: Backend,
) -> None:
    state = TargetState(consecutive_failures=4, snapshot=snapshot())
    await schema_backend.create_at_version(1, target="timesca", state=state)
    assert "instances" not in await schema_backend.tables()
    s = await opened(schema_backend)
    assert await schema_backend.schema_version() == SCHEMA_VERSION
    assert (await s.load_target("timesca"))[0] == state
    clock = schema_backend.clock  # the tables of version 2 work
    assert await s.acquire_target("timesca", owner="A", lease=15, now=clock()) is not None


async def test_a_database_from_the_future_is_refused(schema_backend: Backend) -> None:
    await (await opened(schema_backend)).aclose()
    await schema_backend.set_schema_version(SCHEMA_VERSION + 1)
    with pytest.raises(
        StoreError,
        match=rf"schema version {SCHEMA_VERSION + 1} is newer than .* supports \({SCHEMA_VERSION}\)",
    ):
        await schema_backend.store().open()


async def test_instances_starting_at_once_migrate_once(schema_backend: Backend) -> None:
    stores = [schema_backend.store() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    assert await schema_backend.schema_version() == SCHEMA_VERSION
    clock = schema_backend.clock
    await commit(stores[0], clock, [delivery(1)])
    assert await stores[2].outbox_counts() == [OutboxCounts("slack", "pending", 1)]


# --- cluster: members ---------------------------------------------------------------------------


async def test_members_register_heartbeat_and_are_forgotten_when_silent(
    store: ClusterStore, clock: Clock
) -> None:
    await store.register("b:2", host="b", pid=2, now=clock())
    start_a = clock.advance(1)
    await store.register("a:1", host="a", pid=1, now=clock())
    beat = clock.advance(9)
    assert await store.heartbeat("a:1", now=clock()) is True
    assert await store.heartbeat("nobody", now=clock()) is False
    assert await store.members() == [
        Member(id="a:1", host="a", pid=1, started_at=start_a, last_heartbeat=beat),
        Member(id="b:2", host="b", pid=2, started_at=T0, last_heartbeat=T0),
    ]
    clock.advance(20)
    # b last spoke 30 s ago, a 20 s ago
    assert await store.forget_members(silent_for=25, now=clock()) == 1
    assert [m.id for m in await store.members()] == ["a:1"]
    assert await store.heartbeat("b:2", now=clock()) is False  # b must register again
    restarted = clock.advance(1)
    await store.register("a:1", host="a2", pid=7, now=clock())
    assert await store.members() == [
        Member(id="a:1", host="a2", pid=7, started_at=restarted, last_heartbeat=restarted)
    ]


# --- cluster: target leases ---------------------------------------------------------------------


async def test_a_target_lease_is_held_renewed_and_taken_over_once_lapsed(
    store: ClusterStore, clock: Clock
) -> None:
    lease = 15.0
    assert await store.acquire_target("t", owner="A", lease=lease, now=clock()) == T0 + timedelta(
        seconds=15
    )
    clock.advance(5)
    assert await store.acquire_target("t", owner="B", lease=lease, now=clock()) is None
    clock.advance(5)  # A renews at T0+10
    assert await store.acquire_target("t", owner="A", lease=lease, now=clock()) == T0 + timedelta(
        seconds=25
    )
    clock.now = T0 + timedelta(seconds=24.999999)
    assert await store.acquire_target("t", owner="B", lease=lease, now=clock()) is None
    clock.now = T0 + timedelta(seconds=25)  # A stopped renewing: its lease lapsed
    assert await store.acquire_target("t", owner="B", lease=lease, now=clock()) == T0 + timedelta(
        seconds=40
    )
    clock.advance(1)
    assert await store.acquire_target("t", owner="A", lease=lease, now=clock()) is None
    assert await store.target_leases() == [
        TargetLease(target="t", owner="B", until=T0 + timedelta(seconds=40))
    ]


async def test_a_released_target_is_free_at_once(store: ClusterStore, clock: Clock) -> None:
    await store.acquire_target("t", owner="A", lease=15, now=clock())
    await store.acquire_target("u", owner="A", lease=15, now=clock())
    await store.release_target("t", owner="B")  # not B's to release
    assert await store.acquire_target("t", owner="B", lease=15, now=clock()) is None
    await store.release_target("t", owner="A")
    assert await store.acquire_target("t", owner="B", lease=15, now=clock()) is not None
    assert [(x.target, x.owner) for x in await store.target_leases()] == [("t", "B"), ("u", "A")]


async def test_two_instances_racing_for_targets_never_both_win(
    backend: Backend, clock: Clock
) -> None:
    a, b = await opened(backend), await opened(backend)
    names = [f"target-{i}" for i in range(20)]
    for name in names:
        won = await asyncio.gather(
            a.acquire_target(name, owner="A", lease=15, now=clock()),
            b.acquire_target(name, owner="B", lease=15, now=clock()),
        )
        assert sum(w is not None for w in won) == 1, name
    leases = await a.target_leases()
    assert [x.target for x in leases] == sorted(names)
    # once they lapse, a race for all of them at once still gives each exactly one winner
    clock.advance(15)
    results = await asyncio.gather(
        *(
            s.acquire_target(n, owner=o, lease=15, now=clock())
            for n in names
            for s, o in ((a, "A"), (b, "B"))
        )
    )
    for i, name in enumerate(names):
        assert sum(r is not None for r in results[2 * i : 2 * i + 2]) == 1, name


# --- cluster: the start of each check -----------------------------------------------------------


async def test_a_check_is_granted_once_per_spacing_and_says_how_long_ago_the_last_began(
    store: ClusterStore, clock: Clock
) -> None:
    first = await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock())
    assert first == CheckTurn(granted=True, since_last=None)
    clock.advance(59.5)
    assert await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock()) == CheckTurn(
        granted=False, since_last=59.5
    )
    clock.advance(0.5)
    assert await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock()) == CheckTurn(
        granted=True, since_last=60.0
    )
    # a turn renews the lease, granted or not
    (lease,) = await store.target_leases()
    assert (lease.owner, lease.until, lease.checked_at) == (
        "A",
        clock() + timedelta(seconds=15),
        clock(),
    )


async def test_a_granted_turn_asked_to_load_brings_what_load_for_check_gives(
    store: ClusterStore, clock: Clock
) -> None:
    """The daemon's one round trip for a check's start: the turn and the load together."""
    state = TargetState(consecutive_failures=2)
    await store.commit_check(
        "t",
        state=state,
        validators=Validators(etag="x"),
        observed=None,
        observed_at=clock(),
        deliveries=[],
    )
    mine = Silence("a1", "t", None, None, clock(), clock() + timedelta(hours=2), "", "ops")
    await store.add_silence(mine, now=clock())
    other = Silence("b2", "u", None, None, clock(), clock() + timedelta(hours=2), "", "ops")
    await store.add_silence(other, now=clock())
    turn = await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock(), load=True)
    assert turn == CheckTurn(
        granted=True, since_last=None, loaded=(state, Validators(etag="x"), [mine])
    )
    assert turn.loaded == await store.load_for_check("t", now=clock())
    # a turn not granted loads nothing (no check follows it) ...
    clock.advance(1)
    again = await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock(), load=True)
    assert again == CheckTurn(granted=False, since_last=1.0)
    # ... nor does one not asked to; a target never seen loads as fresh
    assert await store.begin_check("u", owner="A", lease=15, spacing=60, now=clock()) == CheckTurn(
        granted=True, since_last=None
    )
    fresh = await store.begin_check("v", owner="A", lease=15, spacing=60, now=clock(), load=True)
    assert fresh == CheckTurn(
        granted=True, since_last=None, loaded=(TargetState(), Validators(), [])
    )
    # a silence that has ended is not loaded
    clock.advance(3 * 3600 - 1)
    turn = await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock(), load=True)
    assert turn == CheckTurn(
        granted=True, since_last=3 * 3600.0, loaded=(state, Validators(etag="x"), [])
    )


async def test_no_check_begins_while_another_holds_the_lease(
    store: ClusterStore, clock: Clock
) -> None:
    assert await store.acquire_target("t", owner="A", lease=15, now=clock()) is not None
    assert await store.begin_check("t", owner="B", lease=15, spacing=0, now=clock()) is None
    (lease,) = await store.target_leases()
    assert (lease.owner, lease.checked_at) == ("A", None)  # nothing changed


@pytest.mark.parametrize("handover", ["lapse", "release", "leave"])
async def test_whoever_takes_a_target_over_learns_when_its_last_check_began(
    backend: Backend, clock: Clock, handover: str
) -> None:
    a, b = await opened(backend), await opened(backend)
    await a.register("A", host="h", pid=1, now=clock())
    started = clock()
    assert await a.begin_check("t", owner="A", lease=15, spacing=60, now=clock())
    clock.advance(20 if handover == "lapse" else 5)
    if handover == "release":
        await a.release_target("t", owner="A")
    elif handover == "leave":
        await a.leave("A")
    turn = await b.begin_check("t", owner="B", lease=15, spacing=60, now=clock())
    assert turn == CheckTurn(granted=False, since_last=(clock() - started).total_seconds())
    assert [(x.owner, x.checked_at) for x in await b.target_leases()] == [("B", started)]


async def test_a_last_check_after_now_counts_as_none(store: ClusterStore, clock: Clock) -> None:
    assert await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock())
    clock.advance(-3600)  # the clock stepped back an hour
    assert await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock()) == CheckTurn(
        granted=True, since_last=None
    )
    clock.advance(1)
    turn = await store.begin_check("t", owner="A", lease=15, spacing=60, now=clock())
    assert turn == CheckTurn(granted=False, since_last=1.0)


async def test_instances_racing_to_check_a_target_begin_one_check(
    backend: Backend, clock: Clock
) -> None:
    stores = [await opened(backend) for _ in range(3)]
    for n in range(10):
        turns = await asyncio.gather(
            *(
                s.begin_check(f"t{n}", owner=f"I{i}", lease=15, spacing=60, now=clock())
                for i, s in enumerate(stores)
            )
        )
        assert [t is not None and t.granted for t in turns].count(True) == 1, turns
        assert [t is None for t in turns].count(True) == 2, turns


async def test_the_heartbeat_renews_every_lease_of_its_owner_at_once(
    store: ClusterStore, clock: Clock
) -> None:
    for target, owner in (("t1", "A"), ("t2", "A"), ("t3", "B")):
        await store.acquire_target(target, owner=owner, lease=15, now=clock())
    clock.advance(10)
    assert await store.renew_targets("A", lease=15, now=clock()) == ["t1", "t2"]
    assert await store.renew_targets("C", lease=15, now=clock()) == []
    leases = {x.target: (x.owner, x.until) for x in await store.target_leases()}
    renewed = clock() + timedelta(seconds=15)
    assert leases == {
        "t1": ("A", renewed),
        "t2": ("A", renewed),
        "t3": ("B", T0 + timedelta(seconds=15)),
    }
    clock.advance(16)  # t2 lapses and B takes it: A's next renewal no longer names it
    assert await store.acquire_target("t2", owner="B", lease=15, now=clock()) is not None
    assert await store.renew_targets("A", lease=15, now=clock()) == ["t1"]


# --- cluster: outbox claims ---------------------------------------------------------------------


async def test_two_instances_racing_for_the_outbox_send_each_row_once_in_order(
    backend: Backend, clock: Clock
) -> None:
    a, b = await opened(backend), await opened(backend)
    await commit(a, clock, [delivery(n) for n in range(1, 10)])
    expected = await ids_of(a, *range(1, 10))
    sent: list[int] = []
    for _ in range(50):
        got_a, got_b = await asyncio.gather(
            claim(a, clock, "A", limit=2), claim(b, clock, "B", limit=2)
        )
        assert not (got_a and got_b), (got_a, got_b)  # the head is one instance's at a time
        winner = a if got_a else b
        if got_a or got_b:
            await winner.mark_sent(got_a or got_b, now=clock())
            sent += got_a or got_b
        if len(sent) == len(expected):
            break
    assert sent == expected  # every row once, in order


async def test_rows_of_a_dead_instance_go_to_exactly_one_survivor(
    backend: Backend, clock: Clock
) -> None:
    dead, b, c = await opened(backend), await opened(backend), await opened(backend)
    await commit(dead, clock, [delivery(1), delivery(2)])
    held = await claim(dead, clock, "dead", lease=15)
    assert len(held) == 2
    clock.advance(15)
    got_b, got_c = await asyncio.gather(claim(b, clock, "B"), claim(c, clock, "C"))
    assert sorted([got_b, got_c]) == [[], held]


async def test_claims_are_renewed_while_sending_and_lost_once_taken_over(
    store: ClusterStore, clock: Clock
) -> None:
    await commit(store, clock, [delivery(1), delivery(2), delivery(3)])
    one, two, three = await claim(store, clock, "A", lease=60)
    clock.advance(50)
    assert await store.renew_claims([three, one, two], owner="A", lease=60, now=clock()) == [
        one,
        two,
        three,
    ]
    assert (await rows(store))[one].lease_until == T0 + timedelta(seconds=110)
    clock.advance(50)  # T0+100: A's first lease would have lapsed; the renewed one holds
    assert await claim(store, clock, "B") == []
    await store.mark_sent([one], now=clock())
    assert await store.renew_claims([one, two], owner="B", lease=60, now=clock()) == []
    assert await store.renew_claims([one, two, three], owner="A", lease=60, now=clock()) == [
        two,
        three,
    ]
    clock.advance(60)  # A stops renewing; B takes over; A learns it lost the rows
    assert await claim(store, clock, "B") == [two, three]
    assert await store.renew_claims([two, three], owner="A", lease=60, now=clock()) == []
    assert await store.renew_claims([], owner="A", lease=60, now=clock()) == []


async def test_leave_releases_everything_an_instance_holds(backend: Backend, clock: Clock) -> None:
    a, b = await opened(backend), await opened(backend)
    await a.register("A", host="h", pid=1, now=clock())
    await b.register("B", host="h", pid=2, now=clock())
    await a.acquire_target("t1", owner="A", lease=15, now=clock())
    await b.acquire_target("t2", owner="B", lease=15, now=clock())
    await commit(a, clock, [delivery(1), delivery(2, sink="email")])
    assert await claim(a, clock, "A")
    assert await a.claim("email", now=clock(), limit=10, lease=60, owner="A")
    await a.leave("A")
    assert [m.id for m in await b.members()] == ["B"]
    assert [(x.target, x.owner) for x in await b.target_leases()] == [("t2", "B")]
    assert await b.acquire_target("t1", owner="B", lease=15, now=clock()) is not None
    # no lapse to wait for: B sends A's rows at once
    assert len(await claim(b, clock, "B")) == 1
    assert len(await b.claim("email", now=clock(), limit=10, lease=60, owner="B")) == 1
    await a.leave("A")  # leaving twice is harmless
