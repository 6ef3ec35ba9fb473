"""The store's part of silences, on every backend: silenced outbox rows, the silences table; and
SQLite's migration of a first-version database (the outbox rebuilt for its new status)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.models import (
    Event,
    EventKind,
    NewDelivery,
    Reading,
    Silence,
    TargetState,
    Validators,
)
from monitor.store import Store
from monitor.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore
from tests.store_backends import BACKENDS, backend_for, backend_params

T0 = datetime(2025, 5, 16, 9, 30, tzinfo=UTC)

#: an outbox row exactly as the first schema's code wrote it (event JSON of the first version)
V1_EVENT = {
    "event_id": "acf83831224e23133924",
    "kind": "change_pct_changed",
    "target": "timesca",
    "pair": "TMT/USD",
    "old": {"rate": "0.28575", "change_pct": "0"},
    "new": {"rate": "0.28575", "change_pct": "-0.14"},
    "observed_at": "2025-05-16T09:30:00.412875+00:00",
    "page_date": "2025-05-16",
    "source_url": "https://timesca.com/",
    "rule": None,
    "detail": "",
}
#: a target state as the first version wrote it (``inside``, no alarms)
V1_STATE = {
    "snapshot": None,
    "consecutive_failures": 0,
    "down": False,
    "parse_failing": False,
    "last_success_at": "2025-05-16T09:30:00+00:00",
    "inside": ["big|TMT/USD|abs_change"],
    "last_alerted": {},
    "last_routed": {},
    "fingerprint": "f",
}


def event(n: int = 1, kind: EventKind = EventKind.RATE_CHANGED) -> Event:
    return Event(
        kind=kind,
        target="timesca",
        pair="TMT/USD",
        old=Reading(Decimal("0.28575")),
        new=Reading(Decimal("0.28575") + Decimal(n) / 100000),
        observed_at=T0,
    )


def silence(sid: str = "3f9a1c2e", **changes: object) -> Silence:
    fields: dict[str, object] = {
        "id": sid,
        "target": "timesca",
        "pair": None,
        "kind": None,
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=2),
        "comment": "site maintenance",
        "created_by": "ops",
    }
    fields.update(changes)
    return Silence(**fields)  # type: ignore[arg-type]


def v1_database(path: Path) -> None:
    """A database at schema version 1 with rows, the top ids already expired (deleted)."""
    with closing(sqlite3.connect(path)) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO targets VALUES ('timesca', ?, 'W/\"e\"', NULL, ?)",
            (json.dumps(V1_STATE), "2025-05-16T09:30:00.000000Z"),
        )
        for n, status in enumerate(["sent", "dead", "pending", "sent", "sent"], start=1):
            conn.execute(
                "INSERT INTO outbox (dedup_key, sink, target, check_id, event_json, status,"
                " attempts, created_at, next_attempt_at, last_error, updated_at)"
                " VALUES (?, 'team', 'timesca', 'c1', ?, ?, 1, ?, ?, ?, ?)",
                (
                    f"key{n}",
                    json.dumps(V1_EVENT | {"event_id": f"e{n}"}),
                    status,
                    "2025-05-16T09:30:00.000000Z",
                    "2025-05-16T09:30:00.000000Z",
                    "HTTP 404" if status == "dead" else None,
                    "2025-05-16T09:30:00.000000Z",
                ),
            )
        conn.execute("DELETE FROM outbox WHERE id IN (4, 5)")  # expired by retention
        conn.commit()


@pytest.fixture(params=backend_params(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every backend: silences are part of the store contract."""
    async with backend_for(request.param, tmp_path) as backend:
        made = backend.store()
        await made.open()
        yield made


async def test_the_silences_migration_keeps_every_row_and_never_reuses_an_id(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    v1_database(db)
    store = SqliteStore(db)
    await store.open()
    try:
        rows = sorted(await store.outbox_rows(limit=10), key=lambda r: int(str(r.id)))
        assert [(r.id, r.status, r.last_error) for r in rows] == [
            (1, "sent", None),
            (2, "dead", "HTTP 404"),
            (3, "pending", None),
        ]
        # the first version's event JSON still loads, with the new fields at their defaults
        (pending,) = await store.claim("team", now=T0, limit=10, lease=60, owner="w")
        assert pending.event.kind is EventKind.CHANGE_PCT_CHANGED
        assert (pending.event.reminder, pending.event.since, pending.event.test) == (0, None, False)
        assert pending.event.event_id == "e3"
        # the first version's state: its band is kept as fired (and not re-announced)
        state, validators = await store.load_target("timesca")
        assert set(state.alarms) == {"big|TMT/USD|abs_change"}
        assert state.alarms["big|TMT/USD|abs_change"].firing
        assert validators.etag == 'W/"e"'
        await store.commit_check(
            "timesca",
            state=state,
            validators=validators,
            observed=None,
            observed_at=T0,
            deliveries=[NewDelivery(event(9), "team", "c2")],
        )
        ids = [r.id for r in await store.outbox_rows(limit=10)]
        assert max(ids) == 6  # ids 4 and 5 were used (then deleted): AUTOINCREMENT goes on
    finally:
        await store.aclose()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "outbox_v2" not in tables
        assert {"outbox", "silences"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"outbox_sink_status_id", "silences_target_ends_at"} <= indexes
        with pytest.raises(sqlite3.IntegrityError):  # the new CHECK holds
            conn.execute("UPDATE outbox SET status = 'lost' WHERE id = 1")


async def test_a_silenced_row_is_recorded_never_claimed_and_expires(store: Store) -> None:
    loud, quiet = NewDelivery(event(1), "team", "c1"), NewDelivery(event(2), "team", "c1", "s-1")
    inserted = await store.commit_check(
        "timesca",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=T0,
        deliveries=[quiet, loud],
    )
    assert inserted == 2
    rows = {r.dedup_key: r for r in await store.outbox_rows(limit=10)}
    assert (rows[quiet.dedup_key].status, rows[quiet.dedup_key].silenced_by) == (
        "silenced",
        "s-1",
    )
    assert (rows[loud.dedup_key].status, rows[loud.dedup_key].silenced_by) == (
        "pending",
        None,
    )
    assert [r.dedup_key for r in await store.outbox_rows(status="silenced")] == [quiet.dedup_key]
    claimed = await store.claim("team", now=T0, limit=10, lease=60, owner="w")
    assert [d.dedup_key for d in claimed] == [loud.dedup_key]
    assert await store.sinks_with_pending() == ["team"]
    await store.mark_sent([claimed[0].id], now=T0)
    assert await store.next_due("team") is None
    # retention deletes silenced rows like sent and dead ones
    assert await store.expire_history(T0 + timedelta(days=1)) == 2


async def test_silences_are_added_listed_and_expired(store: Store) -> None:
    first = silence("a1", pair="TMT/USD", kind=EventKind.RATE_CHANGED)
    later = silence("b2", starts_at=T0 + timedelta(hours=1), comment="")
    await store.add_silence(first, now=T0)
    await store.add_silence(later, now=T0)
    assert await store.list_silences(now=T0) == [first, later]
    with pytest.raises(StoreError, match="add_silence"):
        await store.add_silence(first, now=T0)  # the id is taken

    at = T0 + timedelta(minutes=30)
    assert await store.expire_silence("a1", now=at) == first  # as it was before
    assert await store.list_silences(now=at) == [later]
    (ended, _) = await store.list_silences(now=at, ended=True)
    assert ended.ends_at == at
    assert not ended.active(at)
    # expiring again changes nothing; an unknown id is None
    assert await store.expire_silence("a1", now=at + timedelta(hours=1)) == ended
    assert (await store.list_silences(now=at, ended=True))[0].ends_at == at
    assert await store.expire_silence("nope", now=at) is None


async def test_load_for_check_brings_the_state_and_the_targets_silences(
    store: Store,
) -> None:
    state = TargetState(consecutive_failures=2, failing_since=T0)
    await store.commit_check(
        "timesca",
        state=state,
        validators=Validators(etag="x"),
        observed=None,
        observed_at=T0,
        deliveries=[],
    )
    mine, other = silence("a1"), silence("b2", target="24kg")
    old = silence("c3", starts_at=T0 - timedelta(hours=3), ends_at=T0 - timedelta(hours=1))
    for s in (mine, other, old):
        await store.add_silence(s, now=T0)
    loaded, validators, silences = await store.load_for_check("timesca", now=T0)
    assert (loaded, validators, silences) == (state, Validators(etag="x"), [mine])
    assert await store.load_for_check("never-seen", now=T0) == (TargetState(), Validators(), [])


async def test_the_new_event_vocabulary_round_trips_through_the_outbox(store: Store) -> None:
    since = T0 - timedelta(minutes=70)
    events = [
        Event(
            EventKind.THRESHOLD_CLEARED,
            "timesca",
            "TMT/USD",
            Reading(Decimal("0.28710"), Decimal("0.47")),
            Reading(Decimal("0.28550"), Decimal("-0.14")),
            T0,
            rule="tmt-high",
            detail="rate back at or below 0.2860",
            since=since,
        ),
        Event(
            EventKind.SOURCE_DOWN,
            "timesca",
            None,
            None,
            None,
            T0,
            rule="outages",
            detail="HTTP 503",
            since=since,
            failed_checks=14,
            reminder=2,
        ),
        Event(EventKind.RATE_CHANGED, "timesca", "TEST/USD", None, None, T0, test=True),
    ]
    await store.commit_check(
        "timesca",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=T0,
        deliveries=[NewDelivery(e, "team", "c1") for e in events],
    )
    claimed = await store.claim("team", now=T0, limit=10, lease=60, owner="w")
    assert [d.event for d in claimed] == events
    assert [d.event.event_id for d in claimed] == [e.event_id for e in events]
    assert claimed[1].event.duration == timedelta(minutes=70)
    assert claimed[1].event.to_json()["duration_seconds"] == 4200
    # a reminder's id differs from the first message's, so the outbox keeps both
    assert dataclasses.replace(events[1], reminder=0, event_id="").event_id != events[1].event_id
