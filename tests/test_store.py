"""The SQLite store on real files: the file, its schema and pragmas, and what only a file can do.

What every backend does (state, outbox, leases, migrations, cluster primitives) is the contract in
``test_store_contract.py``, which runs on SQLite too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.models import NewDelivery, TargetState, Validators
from monitor.store.open import open_store
from monitor.store.postgres import PostgresStore
from monitor.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.store_backends import T0
from tests.test_store_contract import delivery, event, snapshot


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


# --- the file -----------------------------------------------------------------------------------


async def test_open_creates_the_schema_and_the_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    s = SqliteStore(path)
    await s.open()
    await s.aclose()
    with raw(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"targets", "observations", "outbox", "instances", "target_leases"} <= tables
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"outbox_sink_status_id", "observations_observed_at", "outbox_lease_owner"} <= (
            indexes
        )


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    return path


async def test_a_file_that_is_not_a_database_is_a_store_error(garbage: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the database"):
        await SqliteStore(garbage).open()


async def test_a_failure_mid_transaction_rolls_the_whole_check_back(
    store: SqliteStore, db: Path
) -> None:
    before = TargetState(consecutive_failures=1, snapshot=snapshot("0.1"))
    await store.commit_check(
        "timesca",
        state=before,
        validators=Validators(),
        observed=snapshot("0.1"),
        observed_at=T0,
        deliveries=[delivery(1)],
    )
    # A failure in the middle of the transaction: after the state upsert, the history row and the
    # first outbox row have been written.
    with raw(db) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.sink = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    with pytest.raises(StoreError, match="commit_check: sqlite IntegrityError: boom"):
        await store.commit_check(
            "timesca",
            state=TargetState(snapshot=snapshot("0.2")),
            validators=Validators(),
            observed=snapshot("0.2"),
            observed_at=T0 + timedelta(minutes=1),
            deliveries=[delivery(2), NewDelivery(event=event(3), sink="boom", check_id="c2")],
        )
    assert (await store.load_target("timesca"))[0] == before
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


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
    for url in ("postgresql://monitor:hunter2@127.0.0.1/monitor", "postgres://m:hunter2@db/m"):
        pg = open_store(url)  # built, not connected: nothing listens there
        assert isinstance(pg, PostgresStore)
        assert "hunter2" not in repr(pg)
    with pytest.raises(StoreError) as info:
        open_store("mysql://monitor:hunter2@127.0.0.1/monitor")
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreError):
        open_store("sqlite:///")


# --- the wall clock stepping back (SQLite runs on the caller's clock) ---------------------------


async def _commit(store: SqliteStore, deliveries: list[NewDelivery]) -> None:
    await store.commit_check(
        "timesca",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=T0,
        deliveries=deliveries,
    )


async def test_a_clock_stepped_back_costs_a_retry_its_own_delay_not_the_step(
    store: SqliteStore,
) -> None:
    await _commit(store, [delivery(1), delivery(2)])
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
    await _commit(store, [delivery(1)])
    assert await store.claim("slack", now=T0, limit=1, lease=60, owner="A")
    back = T0 - timedelta(hours=1)
    assert await store.claim("slack", now=back, limit=1, lease=60, owner="B") == []
    assert await store.next_due("slack") == back + timedelta(seconds=60)
    later = back + timedelta(seconds=60)
    assert len(await store.claim("slack", now=later, limit=1, lease=60, owner="B")) == 1
