"""The SQLite store on real files: schema and migrations, the one-transaction commit, the outbox."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import StoreError
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
from monitor.store import OutboxCounts, Store
from monitor.store.open import open_store
from monitor.store.sqlite import SCHEMA_VERSION, SqliteStore

T0 = datetime(2025, 5, 16, 8, 30, 0, 123456, tzinfo=UTC)


def event(n: int, *, target: str = "timesca", at: datetime = T0) -> Event:
    return Event(
        kind=EventKind.RATE_CHANGED,
        target=target,
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal(f"0.2857{n}"), Decimal("-0.14")),
        observed_at=at,
    )


def delivery(n: int, sink: str = "slack", check_id: str = "check-1") -> NewDelivery:
    return NewDelivery(event=event(n), sink=sink, check_id=check_id)


def snapshot(rate: str = "0.28575") -> Snapshot:
    return Snapshot(quotes=(Quote("TMT/USD", "TMT", "USD", Decimal(rate), Decimal("-0.14")),))


async def commit(
    store: Store,
    deliveries: list[NewDelivery],
    *,
    at: datetime = T0,
    target: str = "timesca",
    state: TargetState | None = None,
    observed: Snapshot | None = None,
) -> int:
    return await store.commit_check(
        target,
        state=state or TargetState(),
        validators=Validators(),
        observed=observed,
        observed_at=at,
        deliveries=deliveries,
    )


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db)
    await s.open()
    yield s
    await s.aclose()


async def rows(store: SqliteStore, status: str | None = None) -> list[dict[str, Any]]:
    return sorted(await store.list_outbox(status=status, limit=1000), key=lambda r: r["id"])


# --- schema -------------------------------------------------------------------------------------


async def test_open_creates_the_schema_and_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    s = SqliteStore(path)
    await s.open()
    await s.aclose()
    with raw(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"targets", "observations", "outbox"} <= tables
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"outbox_sink_status_id", "observations_observed_at"} <= indexes


async def test_opening_twice_keeps_the_data(db: Path) -> None:
    first = SqliteStore(db)
    await first.open()
    await commit(first, [delivery(1)], state=TargetState(consecutive_failures=2))
    await first.aclose()
    second = SqliteStore(db)
    await second.open()  # no migration runs again, nothing is recreated
    state, _ = await second.load_target("timesca")
    assert state.consecutive_failures == 2
    assert await second.outbox_counts() == [OutboxCounts("slack", "pending", 1)]
    await second.aclose()


async def test_a_database_from_the_future_is_refused(db: Path) -> None:
    s = SqliteStore(db)
    await s.open()
    await s.aclose()
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=r"schema version 2 is newer than .* supports \(1\)"):
        await SqliteStore(db).open()


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    return path


async def test_a_file_that_is_not_a_database_is_a_store_error(garbage: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the database"):
        await SqliteStore(garbage).open()


async def test_calls_before_open_and_after_close_are_store_errors(db: Path) -> None:
    s = SqliteStore(db)
    with pytest.raises(StoreError, match="not open"):
        await s.load_target("x")
    await s.open()
    await s.aclose()
    with pytest.raises(StoreError):
        await s.next_due("slack")


# --- open_store ---------------------------------------------------------------------------------


async def test_open_store_resolves_relative_paths_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///var/state.db")
    assert isinstance(s, SqliteStore)
    assert Path(s.path) == tmp_path / "var" / "state.db"
    monkeypatch.chdir("/")  # resolved at build time: a later chdir does not move the file
    await s.open()
    await s.aclose()
    assert (tmp_path / "var" / "state.db").exists()


def test_open_store_absolute_path_and_other_schemes(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/abs.db")  # sqlite:////tmp/... (four slashes)
    assert isinstance(s, SqliteStore)
    assert Path(s.path) == tmp_path / "abs.db"
    with pytest.raises(StoreError, match="PostgreSQL store is not available"):
        open_store("postgresql://monitor:hunter2@127.0.0.1/monitor")
    with pytest.raises(StoreError) as info:
        open_store("mysql://monitor:hunter2@127.0.0.1/monitor")
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError):
        open_store("sqlite:///")


# --- targets and commit_check -------------------------------------------------------------------


async def test_an_unknown_target_has_a_fresh_state(store: SqliteStore) -> None:
    assert await store.load_target("never-seen") == (TargetState(), Validators())


async def test_commit_check_writes_state_validators_history_and_outbox(
    store: SqliteStore, db: Path
) -> None:
    state = TargetState(
        snapshot=snapshot(),
        last_success_at=T0,
        inside=frozenset({"r|TMT/USD|above"}),
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
    with raw(db) as conn:
        (snap_json,) = conn.execute("SELECT snapshot_json FROM observations").fetchone()
    assert Snapshot.from_json(json.loads(snap_json)) == snapshot()
    claimed = await store.claim("slack", now=T0, limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(1), event(2)]
    assert claimed[0].created_at == T0  # exact to the microsecond, aware UTC
    assert claimed[0].check_id == "check-1"
    assert claimed[0].attempts == 0


@pytest.mark.parametrize("failure", ["trigger", "constraint"])
async def test_commit_check_is_all_or_nothing(store: SqliteStore, db: Path, failure: str) -> None:
    before = TargetState(consecutive_failures=1, snapshot=snapshot("0.1"))
    await commit(store, [delivery(1)], state=before, observed=snapshot("0.1"))
    if failure == "trigger":
        # A failure in the middle of the transaction: after the state upsert, the history row
        # and the first outbox row have been written.
        with raw(db) as conn:
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.sink = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        bad = NewDelivery(event=event(3), sink="boom", check_id="check-2")
    else:
        bad = NewDelivery(event=event(3), sink="slack", check_id=None)  # type: ignore[arg-type]
    after = TargetState(consecutive_failures=0, snapshot=snapshot("0.2"))
    with pytest.raises(StoreError, match="commit_check"):
        await commit(
            store,
            [delivery(2), bad],
            state=after,
            observed=snapshot("0.2"),
            at=T0 + timedelta(minutes=1),
        )
    state, _ = await store.load_target("timesca")
    assert state == before
    assert [r["dedup_key"] for r in await rows(store)] == [delivery(1).dedup_key]
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1
    # and the store still works afterwards
    assert await commit(store, [delivery(2)], state=after, at=T0 + timedelta(minutes=2)) == 1


async def test_the_same_delivery_twice_is_one_row(store: SqliteStore) -> None:
    assert await commit(store, [delivery(1), delivery(1)]) == 1
    assert await commit(store, [delivery(1)]) == 0
    assert await commit(store, [delivery(1, sink="email")]) == 1
    assert await store.outbox_counts() == [
        OutboxCounts("email", "pending", 1),
        OutboxCounts("slack", "pending", 1),
    ]


# --- claim and leases ---------------------------------------------------------------------------


async def test_claim_is_strict_order_behind_a_backing_off_head(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2), delivery(3)])
    head = await store.claim("slack", now=T0, limit=1, lease=60, owner="w")
    later = T0 + timedelta(seconds=30)
    await store.mark_retry([head[0].id], now=T0, next_attempt_at=later, error="503")
    # rows 2 and 3 are due, but the head is not: nothing goes out of order
    assert (
        await store.claim("slack", now=T0 + timedelta(seconds=29), limit=10, lease=60, owner="w")
        == []
    )
    assert await store.next_due("slack") == later
    claimed = await store.claim("slack", now=later, limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(1), event(2), event(3)]
    assert claimed[0].attempts == 1
    assert await store.claim("email", now=later, limit=10, lease=60, owner="w") == []


async def test_a_clock_stepped_back_costs_a_retry_its_own_delay_not_the_step(
    store: SqliteStore,
) -> None:
    await commit(store, [delivery(1), delivery(2)])
    head = await store.claim("slack", now=T0, limit=1, lease=60, owner="w")
    await store.mark_retry(
        [head[0].id], now=T0, next_attempt_at=T0 + timedelta(seconds=30), error="503"
    )
    back = T0 - timedelta(hours=1)  # the wall clock is stepped back an hour
    assert await store.claim("slack", now=back, limit=10, lease=60, owner="w") == []
    assert await store.next_due("slack") == back + timedelta(seconds=30)  # not T0 + 30 s
    claimed = await store.claim(
        "slack", now=back + timedelta(seconds=30), limit=10, lease=60, owner="w"
    )
    assert [d.event for d in claimed] == [event(1), event(2)]


async def test_a_lease_from_before_a_step_back_ends_within_one_lease(store: SqliteStore) -> None:
    await commit(store, [delivery(1)])
    assert await store.claim("slack", now=T0, limit=1, lease=60, owner="A")
    back = T0 - timedelta(hours=1)
    assert await store.claim("slack", now=back, limit=1, lease=60, owner="B") == []
    assert await store.next_due("slack") == back + timedelta(seconds=60)
    later = back + timedelta(seconds=60)
    assert len(await store.claim("slack", now=later, limit=1, lease=60, owner="B")) == 1


async def test_leases_block_other_owners_until_they_lapse(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2), delivery(3)])
    a = await store.claim("slack", now=T0, limit=2, lease=60, owner="A")
    assert [d.event for d in a] == [event(1), event(2)]
    # B sees a head leased by A: nothing
    assert await store.claim("slack", now=T0, limit=10, lease=60, owner="B") == []
    assert await store.next_due("slack") == T0 + timedelta(seconds=60)
    # A may re-claim its own rows (and now row 3 as well)
    again = await store.claim("slack", now=T0, limit=10, lease=60, owner="A")
    assert [d.event for d in again] == [event(1), event(2), event(3)]
    # A crashes. Once its lease lapses, B takes the rows over (the crash-recovery path).
    lapsed = T0 + timedelta(seconds=60)
    b = await store.claim("slack", now=lapsed, limit=10, lease=60, owner="B")
    assert [d.event for d in b] == [event(1), event(2), event(3)]


async def test_a_claim_stops_at_the_first_row_leased_by_another(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2), delivery(3)])
    a = await store.claim("slack", now=T0, limit=2, lease=60, owner="A")
    await store.release([a[0].id])  # row 1 free again, row 2 still A's, row 3 free
    b = await store.claim("slack", now=T0, limit=10, lease=60, owner="B")
    assert [d.event for d in b] == [event(1)]


async def test_release_gives_rows_back_without_counting_an_attempt(store: SqliteStore) -> None:
    await commit(store, [delivery(1)])
    a = await store.claim("slack", now=T0, limit=10, lease=60, owner="A")
    await store.release([d.id for d in a])
    b = await store.claim("slack", now=T0, limit=10, lease=60, owner="B")
    assert [d.attempts for d in b] == [0]


async def test_an_unreadable_row_is_dead_lettered_not_blocking(
    store: SqliteStore, db: Path
) -> None:
    await commit(store, [delivery(1), delivery(2)])
    with raw(db) as conn:
        conn.execute("UPDATE outbox SET event_json = 'not json' WHERE id = 1")
    claimed = await store.claim("slack", now=T0, limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == [event(2)]
    dead = await rows(store, "dead")
    assert [r["id"] for r in dead] == [1]
    assert "unreadable" in str(dead[0]["last_error"])


# --- marks --------------------------------------------------------------------------------------


async def test_mark_transitions(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2), delivery(3), delivery(4)])
    ids = [d.id for d in await store.claim("slack", now=T0, limit=10, lease=60, owner="w")]
    t1 = T0 + timedelta(seconds=5)
    await store.mark_sent([ids[0]], now=t1)
    await store.mark_retry(
        [ids[1]], now=t1, next_attempt_at=t1 + timedelta(seconds=10), error="503", memo="rcpt:a"
    )
    await store.mark_retry(
        [ids[1]], now=t1, next_attempt_at=t1 + timedelta(seconds=20), error="503 again"
    )
    await store.mark_dead([ids[2]], now=t1, error="404 no such webhook")
    await store.release([ids[3]])
    r = {row["id"]: row for row in await rows(store)}
    assert r[ids[0]]["status"] == "sent"
    assert r[ids[0]]["sent_at"] == t1
    assert r[ids[0]]["lease_owner"] is None
    assert r[ids[1]]["status"] == "pending"
    assert r[ids[1]]["attempts"] == 2
    assert r[ids[1]]["next_attempt_at"] == t1 + timedelta(seconds=20)
    assert r[ids[1]]["last_error"] == "503 again"
    assert r[ids[1]]["memo"] == "rcpt:a"  # a retry without a memo keeps the sink's progress
    assert r[ids[1]]["lease_until"] is None
    assert r[ids[2]]["status"] == "dead"
    assert r[ids[2]]["attempts"] == 1
    assert r[ids[2]]["last_error"] == "404 no such webhook"
    assert r[ids[3]]["status"] == "pending"
    assert r[ids[3]]["attempts"] == 0
    assert r[ids[3]]["lease_owner"] is None
    # final states are final
    await store.mark_retry([ids[0]], now=t1, next_attempt_at=t1, error="late")
    await store.mark_sent([ids[2]], now=t1)
    r2 = {row["id"]: row for row in await rows(store)}
    assert r2[ids[0]]["status"] == "sent"
    assert r2[ids[0]]["attempts"] == 0
    assert r2[ids[2]]["status"] == "dead"
    assert await store.outbox_counts() == [
        OutboxCounts("slack", "dead", 1),
        OutboxCounts("slack", "pending", 2),
        OutboxCounts("slack", "sent", 1),
    ]
    assert await store.sinks_with_pending() == ["slack"]


async def test_next_due_is_none_when_nothing_is_pending(store: SqliteStore) -> None:
    assert await store.next_due("slack") is None
    await commit(store, [delivery(1)])
    assert await store.next_due("slack") == T0
    (row,) = await store.claim("slack", now=T0, limit=10, lease=60, owner="w")
    await store.mark_sent([row.id], now=T0)
    assert await store.next_due("slack") is None
    assert await store.sinks_with_pending() == []


async def test_list_outbox_filters_and_validates(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2)])
    (row,) = await store.claim("slack", now=T0, limit=1, lease=60, owner="w")
    await store.mark_dead([row.id], now=T0, error="gone")
    listed = await store.list_outbox()
    assert [r["id"] for r in listed] == [2, 1]  # newest first
    assert listed[0]["short_id"] == delivery(2).dedup_key[:8]
    assert isinstance(listed[0]["event"], dict)
    assert listed[0]["event"]["kind"] == "rate_changed"
    assert [r["id"] for r in await store.list_outbox(status="dead")] == [1]
    assert len(await store.list_outbox(limit=1)) == 1
    with pytest.raises(ValueError, match="status"):
        await store.list_outbox(status="lost")


async def test_requeue_revives_only_dead_rows(store: SqliteStore) -> None:
    await commit(store, [delivery(1), delivery(2)])
    first, second = await store.claim("slack", now=T0, limit=2, lease=60, owner="w")
    await store.mark_dead([first.id], now=T0, error="404 no_service")
    await store.mark_sent([second.id], now=T0)
    later = T0 + timedelta(days=3)
    assert await store.requeue([first.id, second.id, 999], now=later) == 1
    r = {row["id"]: row for row in await rows(store)}
    assert r[first.id]["status"] == "pending"
    assert r[first.id]["attempts"] == 0
    assert r[first.id]["created_at"] == later  # max_age counts from the re-queue
    assert r[first.id]["next_attempt_at"] == later
    assert r[second.id]["status"] == "sent"
    (again,) = await store.claim("slack", now=later, limit=5, lease=60, owner="w2")
    assert again.id == first.id


# --- retention ----------------------------------------------------------------------------------


async def test_expire_history_deletes_old_observations_and_finished_rows(
    store: SqliteStore, db: Path
) -> None:
    old, new = T0, T0 + timedelta(days=40)
    await commit(store, [delivery(1), delivery(2), delivery(3)], observed=snapshot(), at=old)
    await commit(store, [], observed=snapshot("0.3"), at=old + timedelta(hours=1))
    await commit(store, [delivery(4)], observed=snapshot("0.4"), at=new)
    claimed = await store.claim("slack", now=old, limit=2, lease=60, owner="w")
    await store.mark_sent([claimed[0].id], now=old)
    await store.mark_dead([claimed[1].id], now=old, error="x")
    # 2 old observations + 1 sent + 1 dead; the old *pending* row 3 is never deleted
    assert await store.expire_history(new - timedelta(days=30)) == 4
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1
    assert [r["event"]["new"]["rate"] for r in await rows(store)] == ["0.28573", "0.28574"]
    assert await store.expire_history(new - timedelta(days=30)) == 0


# --- crashes ------------------------------------------------------------------------------------


async def test_rows_committed_before_a_crash_are_deliverable_after_it(db: Path) -> None:
    crashed = SqliteStore(db)
    await crashed.open()
    await commit(crashed, [delivery(1), delivery(2)], observed=snapshot())
    # the first worker claims the head and "dies" mid-send: no mark, no release, no close
    await crashed.claim("slack", now=T0, limit=1, lease=60, owner="dead-worker")

    revived = SqliteStore(db)
    await revived.open()
    try:
        state, _ = await revived.load_target("timesca")
        assert state == TargetState()
        assert await revived.outbox_counts() == [OutboxCounts("slack", "pending", 2)]
        assert await revived.claim("slack", now=T0, limit=10, lease=60, owner="new") == []
        after = T0 + timedelta(seconds=61)
        claimed = await revived.claim("slack", now=after, limit=10, lease=60, owner="new")
        assert [d.event for d in claimed] == [event(1), event(2)]
        await revived.mark_sent([d.id for d in claimed], now=after)
        assert await revived.outbox_counts() == [OutboxCounts("slack", "sent", 2)]
    finally:
        await revived.aclose()
        await crashed.aclose()


async def test_the_store_satisfies_the_protocol(db: Path) -> None:
    s: Store = SqliteStore(db)  # mypy checks this line; at run time it is a smoke test
    await s.open()
    await s.aclose()
