"""The SQLite store: the embedded default, one local file, one process.

Every database call runs on ONE dedicated thread that owns the ``sqlite3`` connection
(``monitor.store.thread.CallThread``: what ``run_in_executor`` on a one-thread pool does, for less
CPU per call), so the event loop never blocks on disk I/O and calls are serialized without a lock.
The connection runs in WAL mode with ``synchronous=FULL`` (a committed check survives a power
cut), a 5 s busy timeout, foreign keys on, and autocommit off in the driver's sense: writes are
explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.
``sqlite3.Error`` never leaves this module; it becomes :class:`monitor.errors.StoreError`.

Times are stored as fixed-width ISO-8601 UTC text (``2025-05-16T08:30:00.000000Z``): exact to the
microsecond, readable in the ``sqlite3`` shell, and ordered correctly by plain text comparison.

Schema (version 4; ``PRAGMA user_version`` holds the version, :data:`MIGRATIONS` the steps)::

    targets       name PK, state_json, etag, last_modified, updated_at
    observations  id PK, target -> targets(name), observed_at, snapshot_json
                  index (observed_at) for retention
    outbox        id PK AUTOINCREMENT, dedup_key UNIQUE, sink, target, check_id, event_json,
                  status in (pending, sent, dead, silenced), attempts, created_at,
                  next_attempt_at, lease_owner, lease_until, last_error, memo, sent_at,
                  updated_at, silenced_by (a silence's id or mute:RULE)
                  index (sink, status, id) for the strict per-sink claim order
                  index (lease_owner) where leased, for releasing what an instance holds
    instances     id PK, host, pid, started_at, last_heartbeat                       (version 2)
    target_leases target PK, owner, lease_until                                      (version 2)
    silences      id PK, target, pair, kind, starts_at, ends_at, comment, created_by,
                  created_at, updated_at
                  index (target, ends_at) for the active silences of a target    (version 3)
    target_checks target PK, checked_at (when its last check began)                  (version 4)

Step 3 rebuilt ``outbox`` (SQLite cannot alter a CHECK constraint): a new table, the rows copied
with their ids, the AUTOINCREMENT counter carried over (ids are never reused), the old table
dropped, the new one renamed and indexed, all in the step's one transaction.

The cluster tables (:class:`monitor.store.ClusterStore`) work here as on PostgreSQL, on the
caller's clock, so the daemon has one code path; but a shared SQLite file is never safe across
hosts: several instances need the PostgreSQL store, and the daemon refuses to start next to
another live daemon on one file (``single_daemon``). Their writes (heartbeats, target leases, the
start of each check) are not synced to disk one by one (``synchronous=NORMAL`` for them, which
WAL keeps consistent; the next synced commit carries them): a power cut may forget a lease, never
corrupt the file or lose a committed check, and an unchanged check still costs no fsync.

The delivery worker's bookkeeping (claims, their renewal and release, ``mark_sent``, ``mark_retry``,
``mark_dead``) is not synced one by one either. Each write is still atomic and survives a crash of
the process (WAL in the OS's page cache). A power cut can forget the last ones: a row is then
claimable or pending again and is sent once more. That is the at-least-once promise the outbox
makes anyway. A committed check's events and outbox rows are always synced before any of them is
sent. With changes coming in, the store thread did four or five fsyncs per changed check (a claim
and a mark per sink), not one (``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog

from monitor.errors import StoreError
from monitor.models import (
    Delivery,
    NewDelivery,
    Silence,
    Snapshot,
    TargetState,
    Validators,
    utc,
)
from monitor.store import (
    CheckCommit,
    CheckLoad,
    CheckTurn,
    Member,
    Observation,
    OutboxCounts,
    OutboxRow,
    TargetLease,
)
from monitor.store.codec import (
    ROW_COLUMNS,
    SILENCE_COLUMNS,
    dumps,
    event_of,
    observation,
    outbox_row,
    row_status,
    silence_of,
    target_state,
)
from monitor.store.thread import CallThread, Stopped

log = structlog.get_logger("monitor.store")

T = TypeVar("T")

#: The schema, one step per version: step ``i`` takes a database from version ``i`` to ``i + 1``.
#: Steps only ever get appended; a released step is never edited.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE targets (
            name          TEXT PRIMARY KEY,
            state_json    TEXT NOT NULL,
            etag          TEXT,
            last_modified TEXT,
            updated_at    TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE observations (
            id            INTEGER PRIMARY KEY,
            target        TEXT NOT NULL REFERENCES targets(name) ON DELETE CASCADE,
            observed_at   TEXT NOT NULL,
            snapshot_json TEXT NOT NULL
        )
        """,
        "CREATE INDEX observations_observed_at ON observations (observed_at)",
        """
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            dedup_key       TEXT NOT NULL UNIQUE,
            sink            TEXT NOT NULL,
            target          TEXT NOT NULL,
            check_id        TEXT NOT NULL,
            event_json      TEXT NOT NULL,
            status          TEXT NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            created_at      TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            lease_owner     TEXT,
            lease_until     TEXT,
            last_error      TEXT,
            memo            TEXT,
            sent_at         TEXT,
            updated_at      TEXT NOT NULL
        )
        """,
        "CREATE INDEX outbox_sink_status_id ON outbox (sink, status, id)",
    ),
    (
        # 2: instances and per-target leases (monitor.store.ClusterStore)
        """
        CREATE TABLE instances (
            id             TEXT PRIMARY KEY,
            host           TEXT NOT NULL,
            pid            INTEGER NOT NULL,
            started_at     TEXT NOT NULL,
            last_heartbeat TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE target_leases (
            target      TEXT PRIMARY KEY,
            owner       TEXT NOT NULL,
            lease_until TEXT NOT NULL
        )
        """,
        "CREATE INDEX outbox_lease_owner ON outbox (lease_owner) WHERE lease_owner IS NOT NULL",
    ),
    (  # 3: silences; outbox rows recorded as silenced (the table rebuilt for its CHECK)
        """
        CREATE TABLE outbox_v2 (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            dedup_key       TEXT NOT NULL UNIQUE,
            sink            TEXT NOT NULL,
            target          TEXT NOT NULL,
            check_id        TEXT NOT NULL,
            event_json      TEXT NOT NULL,
            status          TEXT NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'dead', 'silenced')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            created_at      TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            lease_owner     TEXT,
            lease_until     TEXT,
            last_error      TEXT,
            memo            TEXT,
            sent_at         TEXT,
            updated_at      TEXT NOT NULL,
            silenced_by     TEXT
        )
        """,
        """
        INSERT INTO outbox_v2 (id, dedup_key, sink, target, check_id, event_json, status,
            attempts, created_at, next_attempt_at, lease_owner, lease_until, last_error, memo,
            sent_at, updated_at)
        SELECT id, dedup_key, sink, target, check_id, event_json, status,
            attempts, created_at, next_attempt_at, lease_owner, lease_until, last_error, memo,
            sent_at, updated_at
        FROM outbox
        """,
        # AUTOINCREMENT never reuses an id: carry the old counter over, not just max(id)
        "DELETE FROM sqlite_sequence WHERE name = 'outbox_v2'",
        "INSERT INTO sqlite_sequence (name, seq)"
        " SELECT 'outbox_v2', seq FROM sqlite_sequence WHERE name = 'outbox'",
        "DROP TABLE outbox",
        "ALTER TABLE outbox_v2 RENAME TO outbox",
        "CREATE INDEX outbox_sink_status_id ON outbox (sink, status, id)",
        "CREATE INDEX outbox_lease_owner ON outbox (lease_owner) WHERE lease_owner IS NOT NULL",
        """
        CREATE TABLE silences (
            id          TEXT PRIMARY KEY,
            target      TEXT NOT NULL,
            pair        TEXT,
            kind        TEXT,
            starts_at   TEXT NOT NULL,
            ends_at     TEXT NOT NULL,
            comment     TEXT NOT NULL DEFAULT '',
            created_by  TEXT NOT NULL DEFAULT '',
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        )
        """,
        "CREATE INDEX silences_target_ends_at ON silences (target, ends_at)",
    ),
    (
        # 4: when each target's last check began (it outlives the target's lease)
        """
        CREATE TABLE target_checks (
            target     TEXT PRIMARY KEY,
            checked_at TEXT NOT NULL
        )
        """,
    ),
    (
        # 5: what stays fast on a long history (bench/growth.py: 10 M observations, 1 M sent rows):
        # retention's finished rows by age, the dead letters, one target's recent history
        "CREATE INDEX outbox_finished ON outbox (created_at)"
        " WHERE status IN ('sent', 'dead', 'silenced')",
        "CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead'",
        "CREATE INDEX observations_target_observed_at ON observations (target, observed_at)",
    ),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

#: Rows deleted per transaction by ``expire_history``, so a large purge never holds the write
#: lock (and every other store call queued behind it) for long.
_EXPIRE_CHUNK = 5000


def _ts(moment: datetime) -> str:
    """Aware datetime -> fixed-width UTC text that sorts like the instant it names."""
    return utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dt(text: str) -> datetime:
    return utc(datetime.fromisoformat(text))


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


def _opt_ts(moment: datetime | None) -> str | None:
    return None if moment is None else _ts(moment)


def _where(*conditions: tuple[str, object]) -> tuple[str, tuple[object, ...]]:
    """`` WHERE a = ? AND b >= ?`` from the (condition, value) pairs whose value is not None."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(sql for sql, _ in used), tuple(v for _, v in used)


_SILENCE_COLUMNS = ", ".join(SILENCE_COLUMNS)

#: take a target's lease (target, owner, until, now): free, lapsed, or already the owner's; the
#: row comes back only to the one who holds it after
_TAKE_LEASE = (
    "INSERT INTO target_leases (target, owner, lease_until) VALUES (?, ?, ?)"
    " ON CONFLICT (target) DO UPDATE SET owner = excluded.owner,"
    " lease_until = excluded.lease_until"
    " WHERE target_leases.lease_until <= ? OR target_leases.owner = excluded.owner"
    " RETURNING lease_until"
)


def _silence(values: Sequence[Any]) -> Silence:
    return silence_of(values, lambda text: _dt(str(text)))


def _after_step_back(
    now: datetime, until: str, next_attempt_at: str, lease_until: str | None, updated_at: str
) -> tuple[str, str | None]:
    """A row's (next_attempt_at, lease_until) once the wall clock went back behind it: a row
    written after ``now`` waits what it was given from ``now``; a lease ends by ``until``."""
    at = _ts(now)
    if updated_at > at:
        wait = max(_dt(next_attempt_at) - _dt(updated_at), timedelta(0))
        next_attempt_at = _ts(now + wait)
    if lease_until is not None and lease_until > until:
        lease_until = until
    return next_attempt_at, lease_until


#: One check's rows, serialized: its name, state, validators, time, history row and outbox rows.
_CheckRows = tuple[
    str,
    str,
    str | None,
    str | None,
    str,
    str | None,
    list[tuple[str, str, str, str, str, str, str, str | None]],
]


def _prepared(commit: CheckCommit) -> _CheckRows | StoreError:
    """``commit`` as the rows it writes, or the StoreError of a value that cannot be stored."""
    try:
        at = _ts(commit.observed_at)
        state_json = dumps(commit.state.to_json())
        observed = commit.observed
        snapshot_json = None if observed is None else dumps(observed.to_json())
        rows = [
            (
                d.dedup_key,
                d.sink,
                d.event.target,
                d.check_id,
                dumps(d.event.to_json()),
                at,
                row_status(d),
                d.silenced_by,
            )
            for d in commit.deliveries
        ]
    except (TypeError, ValueError, AttributeError) as exc:
        return StoreError(f"commit_check: unstorable value ({type(exc).__name__})")
    v = commit.validators
    return commit.target, state_json, v.etag, v.last_modified, at, snapshot_json, rows


def _write_check(conn: sqlite3.Connection, rows: _CheckRows) -> int:
    """Write one check's rows (inside a transaction); how many outbox rows were new."""
    target, state_json, etag, last_modified, at, snapshot_json, outbox = rows
    conn.execute(
        "INSERT INTO targets (name, state_json, etag, last_modified, updated_at)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET state_json = excluded.state_json,"
        " etag = excluded.etag, last_modified = excluded.last_modified,"
        " updated_at = excluded.updated_at",
        (target, state_json, etag, last_modified, at),
    )
    if snapshot_json is not None:
        conn.execute(
            "INSERT INTO observations (target, observed_at, snapshot_json) VALUES (?, ?, ?)",
            (target, at, snapshot_json),
        )
    if not outbox:
        return 0
    cur = conn.executemany(
        "INSERT INTO outbox (dedup_key, sink, target, check_id, event_json, status,"
        " attempts, created_at, next_attempt_at, updated_at, silenced_by)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?7, 0, ?6, ?6, ?6, ?8)"
        " ON CONFLICT (dedup_key) DO NOTHING",
        outbox,
    )
    return max(cur.rowcount, 0)


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back on any exception."""
    _begin(conn)
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result


def _unsynced(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work`` in a transaction committed without an fsync of its own (``synchronous=NORMAL``),
    for the cluster's short-lived rows and the delivery bookkeeping (see the module's docstring)."""
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        return _transaction(conn, work)
    finally:
        conn.execute("PRAGMA synchronous = FULL")


def _known_version(conn: sqlite3.Connection) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this ticker-monitor "
            f"supports ({SCHEMA_VERSION})"
        )
    return version


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing migration steps, each in its own transaction."""
    while True:
        _begin(conn)
        try:
            version = _known_version(conn)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        log.info("store_migrated", schema_version=version + 1)


#: ``latest_history`` reads this many targets' rows per store-thread call
LATEST_CHUNK = 500
#: one target's newest rows (target, [since,] limit): ``observations (target, observed_at)``
#: walked backwards, stopping at the limit
_NEWEST_OF_TARGET = (
    "SELECT observed_at, snapshot_json FROM observations WHERE target = ?"
    " ORDER BY observed_at DESC, id DESC LIMIT ?"
)
_NEWEST_OF_TARGET_SINCE = (
    "SELECT observed_at, snapshot_json FROM observations WHERE target = ? AND observed_at >= ?"
    " ORDER BY observed_at DESC, id DESC LIMIT ?"
)


def _load(conn: sqlite3.Connection, target: str, at: str) -> CheckLoad:
    """``load_for_check`` on ``conn``: the target's state and its silences not ended at ``at``."""
    row: tuple[str, str | None, str | None] | None = conn.execute(
        "SELECT state_json, etag, last_modified FROM targets WHERE name = ?", (target,)
    ).fetchone()
    silences = conn.execute(
        f"SELECT {_SILENCE_COLUMNS} FROM silences"  # noqa: S608 -- fixed column names
        " WHERE target = ? AND ends_at > ? ORDER BY starts_at, id",
        (target, at),
    ).fetchall()
    state, validators = SqliteStore._state(target, row)
    return state, validators, [_silence(values) for values in silences]


class SqliteStore:
    """:class:`monitor.store.ClusterStore` on a local SQLite file (or ``":memory:"``, for one
    process)."""

    #: one file on one host: one daemon at a time (module docstring)
    single_daemon = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._thread: CallThread | None = None
        #: created, used and closed only on that thread
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> str:
        return self._path

    # --- plumbing ------------------------------------------------------------------------------

    async def _call(self, op: str, work: Callable[[sqlite3.Connection], T]) -> T:
        thread = self._thread
        if thread is None:
            raise StoreError(f"{op}: the store is not open")
        try:
            return await thread.call(lambda: self._guarded(op, work))
        except Stopped:  # aclose() ran meanwhile
            raise StoreError(f"{op}: the store is closed") from None

    def _guarded(self, op: str, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"{op}: the store is closed")
        try:
            return work(conn)
        except sqlite3.Error as exc:
            # sqlite's messages carry no bound values; a DSN never reaches this layer.
            raise StoreError(f"{op}: sqlite {type(exc).__name__}: {exc}") from None

    async def _write(self, op: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(op, lambda conn: _transaction(conn, work))

    async def _write_unsynced(self, op: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(op, lambda conn: _unsynced(conn, work))

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        thread = self._thread = CallThread("sqlite-store")
        thread.start()
        try:
            await thread.call(self._connect)
        except BaseException:
            self._thread = None
            await thread.stop()
            raise

    def _connect(self) -> None:
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=5.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self._path}: {exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode not in ("wal", "memory"):
                log.warning("store_not_wal", journal_mode=mode, path=self._path)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open the database {self._path}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def aclose(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        await thread.stop(last=self._disconnect)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()

    # --- targets -------------------------------------------------------------------------------

    async def load_target(self, target: str) -> tuple[TargetState, Validators]:
        def work(conn: sqlite3.Connection) -> tuple[str, str | None, str | None] | None:
            row: tuple[str, str | None, str | None] | None = conn.execute(
                "SELECT state_json, etag, last_modified FROM targets WHERE name = ?", (target,)
            ).fetchone()
            return row

        return self._state(target, await self._call("load_target", work))

    @staticmethod
    def _state(
        target: str, row: tuple[str, str | None, str | None] | None
    ) -> tuple[TargetState, Validators]:
        if row is None:
            return TargetState(), Validators()
        state_json, etag, last_modified = row
        return target_state(target, state_json), Validators(etag, last_modified)

    async def load_for_check(self, target: str, *, now: datetime) -> CheckLoad:
        """``load_target`` and the silences of ``target`` not yet ended at ``now``, in one call
        to the database thread (a check reads both)."""
        at = _ts(now)
        return await self._call("load_for_check", lambda conn: _load(conn, target, at))

    async def commit_check(
        self,
        target: str,
        *,
        state: TargetState,
        validators: Validators,
        observed: Snapshot | None,
        observed_at: datetime,
        deliveries: Sequence[NewDelivery],
    ) -> int:
        commit = CheckCommit(target, state, validators, observed, observed_at, deliveries)
        (outcome,) = await self.commit_checks([commit])
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    async def commit_checks(self, commits: Sequence[CheckCommit]) -> list[int | StoreError]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` (one fsync) for all of ``commits``, each in a
        savepoint of its own: a check whose writes fail is rolled back alone. An error that ends
        the whole transaction (SQLite rolls back on a full disk, an I/O error) is raised."""
        if not commits:
            return []

        def work(conn: sqlite3.Connection) -> list[int | StoreError]:
            # Serialize before taking the write lock: the lock is held only for the writes.
            prepared = [_prepared(c) for c in commits]
            outcomes: list[int | StoreError] = []

            def write(conn: sqlite3.Connection) -> None:
                for rows in prepared:
                    if isinstance(rows, StoreError):
                        outcomes.append(rows)
                        continue
                    conn.execute("SAVEPOINT one_check")
                    try:
                        inserted = _write_check(conn, rows)
                    except sqlite3.Error as exc:
                        if not conn.in_transaction:  # SQLite rolled the whole transaction back
                            raise
                        conn.execute("ROLLBACK TO one_check")
                        conn.execute("RELEASE one_check")
                        outcomes.append(
                            StoreError(f"commit_check: sqlite {type(exc).__name__}: {exc}")
                        )
                    else:
                        conn.execute("RELEASE one_check")
                        outcomes.append(inserted)

            _transaction(conn, write)
            return outcomes

        return await self._call("commit_checks", work)

    # --- outbox --------------------------------------------------------------------------------

    async def claim(
        self, sink: str, *, now: datetime, limit: int, lease: float, owner: str
    ) -> list[Delivery]:
        """Lease the leading due rows of ``sink`` (see ``Store.claim``).

        A wall clock stepped back leaves times "in the future" that no worker wrote for so
        long: a row written (``updated_at``) after ``now`` keeps the wait it was given from then
        (``next_attempt_at - updated_at``) counted from ``now`` instead, and another owner's
        lease ending more than ``lease`` after ``now`` ends ``lease`` after ``now``. So after a
        step back of an hour a retry waits at most its own delay again, not the extra hour.
        """
        at = _ts(now)
        until = _ts(now + timedelta(seconds=lease))

        def write(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT id, dedup_key, check_id, event_json, attempts, created_at, memo,"
                " next_attempt_at, lease_owner, lease_until, updated_at"
                " FROM outbox WHERE sink = ? AND status = 'pending' ORDER BY id LIMIT ?",
                (sink, max(limit, 0)),
            ).fetchall()
            claimed: list[Delivery] = []
            corrupt: list[tuple[str, str, int]] = []
            rescheduled: list[tuple[str, str, str | None, int]] = []
            for (
                row_id,
                key,
                check_id,
                event_json,
                attempts,
                created_at,
                memo,
                next_attempt_at,
                lease_owner,
                lease_until,
                updated_at,
            ) in rows:
                due, leased = next_attempt_at, lease_until
                if updated_at > at or (lease_until or "") > until:  # the clock stepped back
                    due, leased = _after_step_back(
                        now, until, next_attempt_at, lease_until, updated_at
                    )
                    rescheduled.append((due, min(updated_at, at), leased, row_id))
                if due > at:
                    break  # the head is backing off: everything behind it waits (strict order)
                if lease_owner not in (None, owner) and (leased or "") > at:
                    break  # another worker holds a live lease on it
                event = event_of(event_json, sink=sink, row_id=row_id)
                if isinstance(event, str):  # unreadable: dead-letter it rather than block
                    corrupt.append((event, at, row_id))
                    continue
                claimed.append(
                    Delivery(
                        id=row_id,
                        dedup_key=key,
                        sink=sink,
                        event=event,
                        check_id=check_id,
                        attempts=attempts,
                        created_at=_dt(created_at),
                        memo=memo,
                    )
                )
            if rescheduled:
                log.warning("outbox_times_from_the_future", sink=sink, rows=len(rescheduled))
                conn.executemany(
                    "UPDATE outbox SET next_attempt_at = ?, updated_at = ?, lease_until = ?"
                    " WHERE id = ?",
                    rescheduled,
                )
            if corrupt:
                conn.executemany(
                    "UPDATE outbox SET status = 'dead', last_error = ?, updated_at = ?,"
                    " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    corrupt,
                )
            conn.executemany(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, until, d.id) for d in claimed],
            )
            return claimed

        return await self._write_unsynced("claim", write)

    async def _update(
        self, op: str, sql: str, params: Sequence[object], ids: Sequence[int]
    ) -> None:
        """Run ``sql`` (ending in ``WHERE ... id = ?``) once per id, in one transaction."""
        if not ids:
            return
        rows = [(*params, row_id) for row_id in ids]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, rows)

        await self._write_unsynced(op, write)  # delivery bookkeeping: see the module docstring

    async def mark_sent(self, ids: Sequence[int], *, now: datetime) -> None:
        at = _ts(now)
        await self._update(
            "mark_sent",
            "UPDATE outbox SET status = 'sent', sent_at = ?, updated_at = ?, lease_owner = NULL,"
            " lease_until = NULL WHERE status = 'pending' AND id = ?",
            (at, at),
            ids,
        )

    async def mark_retry(
        self,
        ids: Sequence[int],
        *,
        now: datetime,
        next_attempt_at: datetime,
        error: str,
        memo: str | None = None,
    ) -> None:
        """Count an attempt and schedule the next; a ``memo`` of None keeps the stored memo."""
        await self._update(
            "mark_retry",
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
            " memo = COALESCE(?, memo), updated_at = ?, lease_owner = NULL, lease_until = NULL"
            " WHERE status = 'pending' AND id = ?",
            (_ts(next_attempt_at), error, memo, _ts(now)),
            ids,
        )

    async def mark_dead(self, ids: Sequence[int], *, now: datetime, error: str) -> None:
        await self._update(
            "mark_dead",
            "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?,"
            " updated_at = ?, lease_owner = NULL, lease_until = NULL"
            " WHERE status = 'pending' AND id = ?",
            (error, _ts(now)),
            ids,
        )

    async def release(self, ids: Sequence[int], *, owner: str | None = None) -> None:
        await self._update(
            "release",
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
            " WHERE status = 'pending' AND (?1 IS NULL OR lease_owner = ?1) AND id = ?2",
            (owner,),
            ids,
        )

    async def lease_owners(self) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            return [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT lease_owner FROM outbox"
                    " WHERE status = 'pending' AND lease_owner IS NOT NULL ORDER BY lease_owner"
                )
            ]

        return await self._call("lease_owners", work)

    async def release_leases_of(self, owners: Sequence[str]) -> int:
        if not owners:
            return 0
        rows = [(owner,) for owner in owners]

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE status = 'pending' AND lease_owner = ?",
                rows,
            )
            return max(cur.rowcount, 0)

        return await self._write("release_leases_of", write)

    async def requeue(self, ids: Sequence[int], *, now: datetime) -> int:
        """Give dead rows another life: pending, no attempts, due now, and ``max_age`` counted
        from now. Returns how many rows were dead and are now pending."""
        at = _ts(now)
        rows = [(at, at, at, row_id) for row_id in ids]

        def write(conn: sqlite3.Connection) -> int:
            changed = 0
            for params in rows:
                changed += conn.execute(
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                    " created_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL"
                    " WHERE status = 'dead' AND id = ?",
                    params,
                ).rowcount
            return changed

        return await self._write("requeue", write)

    async def next_due(self, sink: str) -> datetime | None:
        """When the head pending row of ``sink`` can next be claimed: its ``next_attempt_at``, or
        the end of a lease on it if that is later (a leased head is claimable when it lapses)."""

        def work(conn: sqlite3.Connection) -> tuple[str, str | None] | None:
            row: tuple[str, str | None] | None = conn.execute(
                "SELECT next_attempt_at, lease_until FROM outbox"
                " WHERE sink = ? AND status = 'pending' ORDER BY id LIMIT 1",
                (sink,),
            ).fetchone()
            return row

        row = await self._call("next_due", work)
        if row is None:
            return None
        next_attempt_at, lease_until = row
        return _dt(max(next_attempt_at, lease_until or next_attempt_at))

    async def expire_history(self, before: datetime) -> int:
        """Delete observations, and finished (sent or dead) outbox rows, older than ``before``.

        Returns the total number of rows deleted. Works in chunks of a few thousand rows per
        transaction so that checks committing meanwhile never wait long.
        """
        cutoff = _ts(before)
        total = 0
        for sql in (
            "DELETE FROM observations WHERE id IN"
            " (SELECT id FROM observations WHERE observed_at < ? LIMIT ?)",
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            " WHERE status IN ('sent', 'dead', 'silenced') AND created_at < ? LIMIT ?)",
        ):
            while True:

                def write(conn: sqlite3.Connection, sql: str = sql) -> int:
                    return conn.execute(sql, (cutoff, _EXPIRE_CHUNK)).rowcount

                deleted = await self._write("expire_history", write)
                total += deleted
                if deleted < _EXPIRE_CHUNK:
                    break
        return total

    async def outbox_counts(self) -> list[OutboxCounts]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
            return conn.execute(
                "SELECT sink, status, count(*) FROM outbox GROUP BY sink, status"
                " ORDER BY sink, status"
            ).fetchall()

        rows = await self._call("outbox_counts", work)
        return [OutboxCounts(sink=s, status=st, count=n) for s, st, n in rows]

    # --- silences ------------------------------------------------------------------------------

    async def add_silence(self, silence: Silence, *, now: datetime) -> None:
        at = _ts(now)
        params = (
            silence.id,
            silence.target,
            silence.pair,
            silence.kind.value if silence.kind else None,
            _ts(silence.starts_at),
            _ts(silence.ends_at),
            silence.comment,
            silence.created_by,
            at,
            at,
        )

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO silences ({_SILENCE_COLUMNS}, created_at, updated_at)"  # noqa: S608 -- fixed column names
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )

        await self._write("add_silence", write)

    async def list_silences(self, *, now: datetime, ended: bool = False) -> list[Silence]:
        """Silences not yet ended at ``now`` (with ``ended``: every one), oldest first."""
        where = "" if ended else " WHERE ends_at > ?"
        params: tuple[object, ...] = () if ended else (_ts(now),)

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                f"SELECT {_SILENCE_COLUMNS} FROM silences{where}"  # noqa: S608 -- fixed SQL
                " ORDER BY starts_at, id",
                params,
            ).fetchall()

        return [_silence(values) for values in await self._call("list_silences", work)]

    async def expire_silence(self, silence_id: str, *, now: datetime) -> Silence | None:
        """End a silence now (its ``ends_at`` becomes ``now`` unless it already ended).

        Returns the silence as it was before, or None if there is no such silence.
        """
        at = _ts(now)

        def write(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = ?",  # noqa: S608 -- fixed SQL
                (silence_id,),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE silences SET ends_at = ?, updated_at = ? WHERE id = ? AND ends_at > ?",
                    (at, at, silence_id, at),
                )
            return row

        row = await self._write("expire_silence", write)
        return None if row is None else _silence(row)

    # --- extras (operator commands, start-up checks) --------------------------------------------

    async def history(
        self,
        *,
        target: str | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Observation]:
        """Observation rows, oldest first; a row that cannot be read is skipped (and logged)."""
        where, params = _where(("target = ?", target), ("observed_at >= ?", _opt_ts(since)))
        select = f"SELECT id, target, observed_at, snapshot_json FROM observations{where}"  # noqa: S608 -- fixed conditions; values are bound
        if latest is None:
            sql = f"{select} ORDER BY observed_at, id"
        else:  # the newest, found through (target, observed_at) walked backwards
            sql = (
                f"SELECT * FROM ({select} ORDER BY observed_at DESC, id DESC LIMIT ?)"  # noqa: S608 -- as above
                " ORDER BY observed_at, id"
            )
            params = (*params, max(latest, 0))

        def work(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            return [row[1:] for row in conn.execute(sql, params).fetchall()]

        found = (
            observation(name, _dt(at), snapshot_json)
            for name, at, snapshot_json in await self._call("history", work)
        )
        return [o for o in found if o is not None]

    async def latest_history(
        self, targets: Sequence[str], *, since: datetime | None = None, latest: int
    ) -> dict[str, list[Observation]]:
        """Each target's newest ``latest`` rows, oldest first: one indexed walk per target
        (``observations (target, observed_at)`` backwards, stopping at ``latest``), the walks of
        :data:`LATEST_CHUNK` targets in one store-thread call (a commit waits at most one chunk).

        Faster than one ``ROW_NUMBER() OVER (PARTITION BY target ...)`` statement, which numbers
        every row of the window before keeping the newest (docs/performance.md)."""
        cutoff = _opt_ts(since)
        sql = _NEWEST_OF_TARGET if cutoff is None else _NEWEST_OF_TARGET_SINCE
        rest, limit = (() if cutoff is None else (cutoff,)), max(latest, 0)
        names = list(dict.fromkeys(targets))

        def work(chunk: Sequence[str]) -> Callable[[sqlite3.Connection], list[list[Any]]]:
            def read(conn: sqlite3.Connection) -> list[list[Any]]:
                return [conn.execute(sql, (name, *rest, limit)).fetchall() for name in chunk]

            return read

        out: dict[str, list[Observation]] = {}
        for start in range(0, len(names), LATEST_CHUNK):
            chunk = names[start : start + LATEST_CHUNK]
            for name, rows in zip(
                chunk, await self._call("latest_history", work(chunk)), strict=True
            ):
                found = (observation(name, _dt(at), j) for at, j in reversed(rows))
                out[name] = [o for o in found if o is not None]
        return out

    async def outbox_rows(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Outbox rows, newest first. Any status string is accepted (none matches: no rows)."""
        where, params = _where(
            ("status = ?", status),
            ("created_at >= ?", _opt_ts(since)),
            ("instr(dedup_key, ?) = 1", key_prefix),
        )

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                f"SELECT {', '.join(ROW_COLUMNS)} FROM outbox{where}"  # noqa: S608 -- fixed columns and conditions; values are bound
                " ORDER BY id DESC LIMIT ?",
                (*params, max(limit, 0)),
            ).fetchall()

        return [
            outbox_row(values, lambda text: _dt(str(text)))
            for values in await self._call("outbox_rows", work)
        ]

    async def sinks_with_pending(self) -> list[str]:
        """Names of the sinks that have pending rows (to warn about sinks no longer configured)."""

        def work(conn: sqlite3.Connection) -> list[str]:
            return [
                str(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT sink FROM outbox WHERE status = 'pending' ORDER BY sink"
                )
            ]

        return await self._call("sinks_with_pending", work)

    # --- cluster -------------------------------------------------------------------------------

    async def register(self, member: str, *, host: str, pid: int, now: datetime) -> None:
        at = _ts(now)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO instances (id, host, pid, started_at, last_heartbeat)"
                " VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (id) DO UPDATE SET host = excluded.host,"
                " pid = excluded.pid, started_at = excluded.started_at,"
                " last_heartbeat = excluded.last_heartbeat",
                (member, host, pid, at),
            )

        await self._write("register", write)

    async def heartbeat(self, member: str, *, now: datetime) -> bool:
        at = _ts(now)

        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE instances SET last_heartbeat = ? WHERE id = ?", (at, member)
                ).rowcount
                > 0
            )

        return await self._write_unsynced("heartbeat", write)

    async def members(self) -> list[Member]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, str, int, str, str]]:
            return conn.execute(
                "SELECT id, host, pid, started_at, last_heartbeat FROM instances ORDER BY id"
            ).fetchall()

        return [
            Member(id=i, host=h, pid=p, started_at=_dt(s), last_heartbeat=_dt(b))
            for i, h, p, s, b in await self._call("members", work)
        ]

    async def forget_members(self, *, silent_for: float, now: datetime) -> int:
        cutoff = _ts(now - timedelta(seconds=silent_for))

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM instances WHERE last_heartbeat < ?", (cutoff,)
            ).rowcount

        return await self._write("forget_members", write)

    async def acquire_target(
        self, target: str, *, owner: str, lease: float, now: datetime
    ) -> datetime | None:
        at = _ts(now)
        until = _ts(now + timedelta(seconds=lease))

        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                _TAKE_LEASE,
                (target, owner, until, at),
            ).fetchone()
            return None if row is None else str(row[0])

        held = await self._write_unsynced("acquire_target", write)
        return None if held is None else _dt(held)

    async def release_target(self, target: str, *, owner: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM target_leases WHERE target = ? AND owner = ?", (target, owner)
            )

        await self._write_unsynced("release_target", write)

    async def target_leases(self) -> list[TargetLease]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
            return conn.execute(
                "SELECT l.target, l.owner, l.lease_until, c.checked_at FROM target_leases l"
                " LEFT JOIN target_checks c ON c.target = l.target ORDER BY l.target"
            ).fetchall()

        return [
            TargetLease(target=t, owner=o, until=_dt(u), checked_at=_opt_dt(c))
            for t, o, u, c in await self._call("target_leases", work)
        ]

    async def renew_targets(self, owner: str, *, lease: float, now: datetime) -> list[str]:
        until = _ts(now + timedelta(seconds=lease))

        def write(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "UPDATE target_leases SET lease_until = ? WHERE owner = ? RETURNING target",
                (until, owner),
            ).fetchall()
            return sorted(str(r[0]) for r in rows)

        return await self._write_unsynced("renew_targets", write)

    async def begin_check(
        self,
        target: str,
        *,
        owner: str,
        lease: float,
        spacing: float,
        now: datetime,
        load: bool = False,
    ) -> CheckTurn | None:
        at = _ts(now)
        until = _ts(now + timedelta(seconds=lease))

        def write(conn: sqlite3.Connection) -> CheckTurn | None:
            won = conn.execute(
                _TAKE_LEASE,
                (target, owner, until, at),
            ).fetchone()
            if won is None:
                return None
            row = conn.execute(
                "SELECT checked_at FROM target_checks WHERE target = ?", (target,)
            ).fetchone()
            since = None if row is None else (now - _dt(str(row[0]))).total_seconds()
            if since is not None and since < 0:  # the clock stepped back: it does not count
                since = None
            granted = since is None or since >= spacing
            if granted:
                conn.execute(
                    "INSERT INTO target_checks (target, checked_at) VALUES (?, ?)"
                    " ON CONFLICT (target) DO UPDATE SET checked_at = excluded.checked_at",
                    (target, at),
                )
            loaded = _load(conn, target, at) if granted and load else None
            return CheckTurn(granted=granted, since_last=since, loaded=loaded)

        return await self._write_unsynced("begin_check", write)

    async def renew_claims(
        self, ids: Sequence[int], *, owner: str, lease: float, now: datetime
    ) -> list[int]:
        until = _ts(now + timedelta(seconds=lease))
        wanted = sorted(set(ids))

        def write(conn: sqlite3.Connection) -> list[int]:
            return [
                row_id
                for row_id in wanted
                if conn.execute(
                    "UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_owner = ?"
                    " AND status = 'pending'",
                    (until, row_id, owner),
                ).rowcount
            ]

        if not wanted:
            return []
        return await self._write_unsynced("renew_claims", write)

    async def leave(self, member: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM target_leases WHERE owner = ?", (member,))
            conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ? AND status = 'pending'",
                (member,),
            )
            conn.execute("DELETE FROM instances WHERE id = ?", (member,))

        await self._write("leave", write)


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
