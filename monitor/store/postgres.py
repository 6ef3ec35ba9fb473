"""The PostgreSQL store: one database shared by several instances of the daemon.

``database = "postgresql://user:password@host:5432/dbname?sslmode=verify-full&sslrootcert=..."``
(``postgres://`` too). The URL is libpq's, so every libpq parameter works in its query string:
TLS (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ``sslpassword``, ``sslcrl``), a
schema (``options=-csearch_path%3Dmonitor``), ``connect_timeout`` (default here 10 s),
``application_name`` (default ``ticker-monitor``), several hosts (``host=a,b`` with
``target_session_attrs=read-write``). ``docs/high-availability.md`` explains the choices.

Connections come from psycopg 3's :class:`psycopg_pool.AsyncConnectionPool` (each checked before
use, so a restarted server costs no failed call). ``psycopg`` errors never leave this module: they
become :class:`monitor.errors.StoreError` with one line that never contains the URL nor its
password (and psycopg's own loggers are guarded the same way while the store is open).

Schema: the same logical tables as ``monitor.store.sqlite`` (same version numbers, one step per
version in :data:`MIGRATIONS`), with ``timestamptz`` times, identity ids and JSON kept as text,
exactly as written (decimals stay strings). ``schema_migrations`` records each applied version;
:meth:`PostgresStore.open` applies the missing steps in one transaction under an advisory lock
(per schema), so instances starting at once migrate once. The outbox ``status`` is plain text with
a named CHECK (``outbox_status_check``) that a later step can replace to admit a new status.

Time: wherever a lease or a due time is compared, the database's clock decides
(``statement_timestamp()``), never a host's (see ``monitor.store``). Outbox claims lock the head
rows of a sink with ``FOR UPDATE SKIP LOCKED``: an instance never waits for another's claim, and
takes only an unbroken run from the head, so order stays strict per sink.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString, cast
from urllib.parse import unquote

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

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
from monitor.redact import LoggerGuard, Scrubber
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
    dumps,
    event_of,
    observation,
    outbox_row,
    row_status,
    silence_of,
    target_state,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore"]

log = structlog.get_logger("monitor.store")

#: The schema, one step per version: step ``i`` takes a database from version ``i`` to ``i + 1``.
#: Steps only ever get appended; a released step is never edited. Versions match SQLite's.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE targets (
            name          text PRIMARY KEY,
            state_json    text NOT NULL,
            etag          text,
            last_modified text,
            updated_at    timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE observations (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            target        text NOT NULL REFERENCES targets (name) ON DELETE CASCADE,
            observed_at   timestamptz NOT NULL,
            snapshot_json text NOT NULL
        )
        """,
        "CREATE INDEX observations_observed_at ON observations (observed_at)",
        """
        CREATE TABLE outbox (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            dedup_key       text NOT NULL UNIQUE,
            sink            text NOT NULL,
            target          text NOT NULL,
            check_id        text NOT NULL,
            event_json      text NOT NULL,
            status          text NOT NULL DEFAULT 'pending'
                            CONSTRAINT outbox_status_check
                            CHECK (status IN ('pending', 'sent', 'dead')),
            attempts        integer NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL,
            next_attempt_at timestamptz NOT NULL,
            lease_owner     text,
            lease_until     timestamptz,
            last_error      text,
            memo            text,
            sent_at         timestamptz,
            updated_at      timestamptz NOT NULL
        )
        """,
        # the strict per-sink claim order walks this one
        "CREATE INDEX outbox_pending ON outbox (sink, id) WHERE status = 'pending'",
        # retention deletes finished rows by age
        "CREATE INDEX outbox_finished ON outbox (created_at) WHERE status IN ('sent', 'dead')",
    ),
    (
        # 2: instances and per-target leases (monitor.store.ClusterStore)
        """
        CREATE TABLE instances (
            id             text PRIMARY KEY,
            host           text NOT NULL,
            pid            integer NOT NULL,
            started_at     timestamptz NOT NULL,
            last_heartbeat timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE target_leases (
            target      text PRIMARY KEY,
            owner       text NOT NULL,
            lease_until timestamptz NOT NULL
        )
        """,
        "CREATE INDEX outbox_lease_owner ON outbox (lease_owner) WHERE lease_owner IS NOT NULL",
    ),
    (
        # 3: silences; outbox rows recorded as silenced (by a silence's id or mute:RULE)
        "ALTER TABLE outbox DROP CONSTRAINT outbox_status_check",
        "ALTER TABLE outbox ADD CONSTRAINT outbox_status_check"
        " CHECK (status IN ('pending', 'sent', 'dead', 'silenced'))",
        "ALTER TABLE outbox ADD COLUMN silenced_by text",
        "DROP INDEX outbox_finished",
        "CREATE INDEX outbox_finished ON outbox (created_at)"
        " WHERE status IN ('sent', 'dead', 'silenced')",
        """
        CREATE TABLE silences (
            id          text PRIMARY KEY,
            target      text NOT NULL,
            pair        text,
            kind        text,
            starts_at   timestamptz NOT NULL,
            ends_at     timestamptz NOT NULL,
            comment     text NOT NULL DEFAULT '',
            created_by  text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL
        )
        """,
        "CREATE INDEX silences_target_ends_at ON silences (target, ends_at)",
    ),
    (
        # 4: when each target's last check began (it outlives the target's lease)
        """
        CREATE TABLE target_checks (
            target     text PRIMARY KEY,
            checked_at timestamptz NOT NULL
        )
        """,
    ),
    (
        # 5: what stays fast on a long history: the dead letters, one target's recent history
        # (retention's finished rows have had their index since step 1)
        "CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead'",
        "CREATE INDEX observations_target_observed_at ON observations (target, observed_at)",
    ),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

#: The first key of the advisory lock taken while migrating ("tick"); the second is the schema's.
_LOCK_CLASS = 0x7469636B

#: The database's clock, or the clock a test injects (bound as ``%(clock)s``; NULL in production).
_NOW = sql.SQL("coalesce(%(clock)s::timestamptz, statement_timestamp())")

#: Rows deleted per statement by ``expire_history`` (as in SQLite: no long-held locks).
_EXPIRE_CHUNK = 5000

_DEFAULTS = {"application_name": "ticker-monitor", "connect_timeout": "10"}


_SILENCE_COLUMNS: LiteralString = "id, target, pair, kind, starts_at, ends_at, comment, created_by"


def _silence(values: Sequence[Any]) -> Silence:
    return silence_of(values, lambda moment: utc(cast(datetime, moment)))


def _q(text: LiteralString) -> sql.Composed:
    """A statement whose ``{now}`` is the clock leases and due times are compared on."""
    return sql.SQL(text).format(now=_NOW)


#: take a target's lease: free, lapsed, or already the owner's; of several instances asking at
#: once, the row comes back to exactly one (the unique index serializes them)
_TAKE_LEASE = _q(
    "INSERT INTO target_leases (target, owner, lease_until)"
    " VALUES (%(target)s, %(owner)s, {now} + make_interval(secs => %(lease)s))"
    " ON CONFLICT (target) DO UPDATE SET owner = excluded.owner,"
    " lease_until = excluded.lease_until"
    " WHERE target_leases.lease_until <= {now} OR target_leases.owner = excluded.owner"
    " RETURNING lease_until"
)


def _one_line(text: str) -> str:
    """libpq's message on one line: each distinct line once (it repeats one per attempt, e.g.
    with and without TLS), joined by "; "."""
    lines: list[str] = []
    for line in text.removeprefix("connection failed: ").splitlines():
        cleaned = " ".join(line.split())
        if cleaned and cleaned not in lines:
            lines.append(cleaned)
    return "; ".join(lines)


def _secrets_of(dsn: str, params: dict[str, Any]) -> list[str]:
    """What must never be shown: the URL, and each password in it (as written and decoded)."""
    found = [dsn]
    for key in ("password", "sslpassword"):
        value = params.get(key)
        if value:
            found += [str(value), unquote(str(value))]
    return found


async def _load(conn: psycopg.AsyncConnection[Any], target: str, now: datetime) -> CheckLoad:
    """``load_for_check`` on ``conn``: the target's state and its silences not ended at ``now``."""
    cur = await conn.execute(
        "SELECT state_json, etag, last_modified FROM targets WHERE name = %(name)s",
        {"name": target},
    )
    row = await cur.fetchone()
    cur = await conn.execute(
        f"SELECT {_SILENCE_COLUMNS} FROM silences"  # noqa: S608 -- fixed column names
        " WHERE target = %(name)s AND ends_at > %(at)s ORDER BY starts_at, id",
        {"name": target, "at": utc(now)},
    )
    silences = await cur.fetchall()
    state, validators = _target(target, row)
    return state, validators, [_silence(values) for values in silences]


def _target(target: str, row: Sequence[Any] | None) -> tuple[TargetState, Validators]:
    """A ``targets`` row (``state_json, etag, last_modified``) as the target's state; a fresh one
    for none."""
    if row is None:
        return TargetState(), Validators()
    state_json, etag, last_modified = row
    return target_state(target, state_json), Validators(etag, last_modified)


class PostgresStore:
    """:class:`monitor.store.ClusterStore` on a PostgreSQL database (see the module's docstring).

    ``clock`` is for tests only: a function standing in for the database's clock (and the host's,
    where a due time is turned into the caller's), so lease tests need no sleeps. ``min_size`` and
    ``max_size`` bound the pool; ``timeout`` is how long a call waits for a free connection.
    """

    #: the database's clock and row locks coordinate any number of daemons
    single_daemon = False

    def __init__(
        self,
        dsn: str,
        *,
        clock: Callable[[], datetime] | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:
            # psycopg's message quotes the offending part of the URL: not shown
            raise StoreError("database: not a valid PostgreSQL URL (value not shown)") from None
        self._secrets = _secrets_of(dsn, params)
        self._scrub = Scrubber(self._secrets)
        self._conninfo = make_conninfo(
            dsn, **{k: v for k, v in _DEFAULTS.items() if k not in params}
        )
        host, port, dbname = params.get("host"), params.get("port"), params.get("dbname")
        self._where = f"{host or '(default host)'}:{port or 5432}/{dbname or '(default)'}"
        self._clock = clock
        self._min_size, self._max_size, self._timeout = min_size, max_size, timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._guard: LoggerGuard | None = None
        self._closed = False

    def __repr__(self) -> str:
        return self._scrub(f"PostgresStore({self._where})")

    # --- plumbing ------------------------------------------------------------------------------

    def _error(self, op: str, exc: psycopg.Error) -> StoreError:
        """``exc`` as one safe line: its primary message only (a DETAIL may quote row values)."""
        diag = getattr(exc, "diag", None)
        text = (diag.message_primary if diag is not None else None) or str(exc)
        return StoreError(f"{op}: postgresql {type(exc).__name__}: {self._scrub(_one_line(text))}")

    def _p(self, **params: object) -> dict[str, object]:
        """Query parameters, with the injected clock (None: the database's)."""
        params["clock"] = None if self._clock is None else utc(self._clock())
        return params

    def _host_now(self) -> datetime:
        return utc(self._clock()) if self._clock is not None else datetime.now(UTC)

    @contextlib.asynccontextmanager
    async def _conn(self, op: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{op}: the store is {'closed' if self._closed else 'not open'}")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:  # pool timeouts and closed pools are psycopg errors too
            raise self._error(op, exc) from None

    @contextlib.asynccontextmanager
    async def _tx(self, op: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._conn(op) as conn, conn.transaction():
            yield conn

    async def _rows(
        self, op: str, query: LiteralString | sql.Composed, params: dict[str, object]
    ) -> list[tuple[Any, ...]]:
        async with self._conn(op) as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def _run(
        self, op: str, query: LiteralString | sql.Composed, params: dict[str, object]
    ) -> int:
        """One statement in its own transaction; how many rows it touched."""
        async with self._conn(op) as conn:
            cur = await conn.execute(query, params)
            return max(cur.rowcount, 0)

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._guard = LoggerGuard(self._secrets, ["psycopg", "psycopg.pool"])
        try:
            await self._migrate()
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self._conninfo,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                kwargs={"autocommit": True},
                check=AsyncConnectionPool.check_connection,
                name="ticker-monitor",
                open=False,
            )
            try:
                await pool.open(wait=True, timeout=self._timeout)
            except BaseException:
                await pool.close()
                raise
        except BaseException as exc:
            self._guard.remove()
            self._guard = None
            if isinstance(exc, psycopg.Error):
                where = f"cannot open the database {self._where}"
                raise StoreError(self._scrub(f"{where}: {_one_line(str(exc))}")) from None
            raise
        self._pool = pool
        self._closed = False

    async def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, once, however many instances start."""
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))",
                    (_LOCK_CLASS,),
                )
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT statement_timestamp())"
                )
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                row = await cur.fetchone()
                version = int(row[0]) if row is not None else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"database schema version {version} is newer than this ticker-monitor "
                        f"supports ({SCHEMA_VERSION})"
                    )
                for step in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[step]:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (step + 1,)
                    )
            for step in range(version, SCHEMA_VERSION):
                log.info("store_migrated", schema_version=step + 1)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self._closed = True
        try:
            await pool.close()
        except psycopg.Error as exc:
            raise self._error("aclose", exc) from None
        finally:
            if self._guard is not None:
                self._guard.remove()
                self._guard = None

    # --- targets -------------------------------------------------------------------------------

    async def load_target(self, target: str) -> tuple[TargetState, Validators]:
        rows = await self._rows(
            "load_target",
            "SELECT state_json, etag, last_modified FROM targets WHERE name = %(name)s",
            {"name": target},
        )
        return _target(target, rows[0] if rows else None)

    async def load_for_check(self, target: str, *, now: datetime) -> CheckLoad:
        """``load_target`` and the target's silences not yet ended, on one connection."""
        async with self._conn("load_for_check") as conn:
            return await _load(conn, target, now)

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
        async with self._tx("commit_check") as conn:
            return await self._write_check(conn, commit)

    async def commit_checks(self, commits: Sequence[CheckCommit]) -> list[int | StoreError]:
        """One transaction (one commit, one WAL flush) for all of ``commits``, each in a
        savepoint of its own: a check whose writes fail is rolled back alone."""
        outcomes: list[int | StoreError] = []
        if not commits:
            return outcomes
        async with self._tx("commit_checks") as conn:
            for commit in commits:
                try:
                    async with conn.transaction():  # a savepoint
                        outcomes.append(await self._write_check(conn, commit))
                except psycopg.Error as exc:
                    outcomes.append(self._error("commit_check", exc))
                except (TypeError, ValueError) as exc:
                    outcomes.append(
                        StoreError(f"commit_check: unstorable value ({type(exc).__name__})")
                    )
        return outcomes

    async def _write_check(self, conn: psycopg.AsyncConnection[Any], commit: CheckCommit) -> int:
        """One check's rows, inside the caller's transaction; how many outbox rows were new."""
        target, validators, deliveries = commit.target, commit.validators, commit.deliveries
        at = utc(commit.observed_at)
        state_json = dumps(commit.state.to_json())
        snapshot_json = None if commit.observed is None else dumps(commit.observed.to_json())
        await conn.execute(
            "INSERT INTO targets (name, state_json, etag, last_modified, updated_at)"
            " VALUES (%(name)s, %(state)s, %(etag)s, %(lm)s, %(at)s)"
            " ON CONFLICT (name) DO UPDATE SET state_json = excluded.state_json,"
            " etag = excluded.etag, last_modified = excluded.last_modified,"
            " updated_at = excluded.updated_at",
            {
                "name": target,
                "state": state_json,
                "etag": validators.etag,
                "lm": validators.last_modified,
                "at": at,
            },
        )
        if snapshot_json is not None:
            await conn.execute(
                "INSERT INTO observations (target, observed_at, snapshot_json) VALUES (%s, %s, %s)",
                (target, at, snapshot_json),
            )
        if not deliveries:
            return 0
        # One statement for every row, in order (ids ascend with it); a new row is due at once
        # by the database's clock.
        cur = await conn.execute(
            _q(
                "INSERT INTO outbox (dedup_key, sink, target, check_id, event_json, status,"
                " silenced_by, created_at, next_attempt_at, updated_at)"
                " SELECT k, s, t, c, e, st, sb, %(at)s, {now}, %(at)s"
                " FROM unnest(%(keys)s::text[], %(sinks)s::text[], %(targets)s::text[],"
                " %(checks)s::text[], %(events)s::text[], %(statuses)s::text[],"
                " %(silenced)s::text[]) WITH ORDINALITY AS r (k, s, t, c, e, st, sb, n)"
                " ORDER BY n ON CONFLICT (dedup_key) DO NOTHING"
            ),
            self._p(
                at=at,
                keys=[d.dedup_key for d in deliveries],
                sinks=[d.sink for d in deliveries],
                targets=[d.event.target for d in deliveries],
                checks=[d.check_id for d in deliveries],
                events=[dumps(d.event.to_json()) for d in deliveries],
                statuses=[row_status(d) for d in deliveries],
                silenced=[d.silenced_by for d in deliveries],
            ),
        )
        return max(cur.rowcount, 0)

    # --- outbox --------------------------------------------------------------------------------

    async def claim(
        self, sink: str, *, now: datetime, limit: int, lease: float, owner: str
    ) -> list[Delivery]:
        at = utc(now)
        params = self._p(sink=sink, owner=owner, limit=max(limit, 0), lease=lease)
        async with self._tx("claim") as conn:
            cur = await conn.execute(
                _q(
                    "SELECT id, dedup_key, check_id, event_json, attempts, created_at, memo,"
                    " next_attempt_at <= {now},"
                    " (lease_owner IS NULL OR lease_owner = %(owner)s OR lease_until <= {now})"
                    " FROM outbox WHERE sink = %(sink)s AND status = 'pending'"
                    " ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
                ),
                params,
            )
            locked = await cur.fetchall()
            if not locked:
                return []
            # SKIP LOCKED passes over rows another instance is claiming or marking right now;
            # only the unbroken run from the head of the sink's pending rows may go out.
            cur = await conn.execute(
                "SELECT id FROM outbox WHERE sink = %(sink)s AND status = 'pending'"
                " AND id <= %(last)s ORDER BY id",
                {"sink": sink, "last": locked[-1][0]},
            )
            head = [r[0] for r in await cur.fetchall()]
            claimed: list[Delivery] = []
            corrupt: list[tuple[int, str]] = []
            for position, row in enumerate(locked):
                row_id, key, check_id, event_json, attempts, created_at, memo, due, free = row
                if position >= len(head) or head[position] != row_id:
                    break  # an earlier row is held by someone else's transaction
                if not due or not free:
                    break  # backing off, or leased by another owner: everything behind waits
                event = event_of(event_json, sink=sink, row_id=row_id)
                if isinstance(event, str):  # unreadable: dead-letter it rather than block
                    corrupt.append((row_id, event))
                    continue
                claimed.append(
                    Delivery(
                        id=row_id,
                        dedup_key=key,
                        sink=sink,
                        event=event,
                        check_id=check_id,
                        attempts=attempts,
                        created_at=utc(created_at),
                        memo=memo,
                    )
                )
            for row_id, error in corrupt:
                await conn.execute(
                    "UPDATE outbox SET status = 'dead', last_error = %s, updated_at = %s,"
                    " lease_owner = NULL, lease_until = NULL WHERE id = %s",
                    (error, at, row_id),
                )
            if claimed:
                await conn.execute(
                    _q(
                        "UPDATE outbox SET lease_owner = %(owner)s,"
                        " lease_until = {now} + make_interval(secs => %(lease)s)"
                        " WHERE id = ANY(%(ids)s::bigint[])"
                    ),
                    {**params, "ids": [d.id for d in claimed]},
                )
            return claimed

    async def mark_sent(self, ids: Sequence[int], *, now: datetime) -> None:
        if ids:
            await self._run(
                "mark_sent",
                "UPDATE outbox SET status = 'sent', sent_at = %(at)s, updated_at = %(at)s,"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE status = 'pending' AND id = ANY(%(ids)s::bigint[])",
                {"at": utc(now), "ids": list(ids)},
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
        """Count an attempt and schedule the next: ``next_attempt_at - now`` from now by the
        database's clock. A ``memo`` of None keeps the stored memo."""
        if ids:
            await self._run(
                "mark_retry",
                _q(
                    "UPDATE outbox SET attempts = attempts + 1,"
                    " next_attempt_at = {now} + (%(next)s::timestamptz - %(at)s::timestamptz),"
                    " last_error = %(error)s, memo = coalesce(%(memo)s, memo), updated_at = %(at)s,"
                    " lease_owner = NULL, lease_until = NULL"
                    " WHERE status = 'pending' AND id = ANY(%(ids)s::bigint[])"
                ),
                self._p(
                    at=utc(now),
                    next=utc(next_attempt_at),
                    error=error,
                    memo=memo,
                    ids=list(ids),
                ),
            )

    async def mark_dead(self, ids: Sequence[int], *, now: datetime, error: str) -> None:
        if ids:
            await self._run(
                "mark_dead",
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1,"
                " last_error = %(error)s, updated_at = %(at)s, lease_owner = NULL,"
                " lease_until = NULL WHERE status = 'pending' AND id = ANY(%(ids)s::bigint[])",
                {"at": utc(now), "error": error, "ids": list(ids)},
            )

    async def release(self, ids: Sequence[int], *, owner: str | None = None) -> None:
        if ids:
            await self._run(
                "release",
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE status = 'pending' AND id = ANY(%(ids)s::bigint[])"
                " AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s)",
                {"ids": list(ids), "owner": owner},
            )

    async def lease_owners(self) -> list[str]:
        rows = await self._rows(
            "lease_owners",
            "SELECT DISTINCT lease_owner FROM outbox"
            " WHERE status = 'pending' AND lease_owner IS NOT NULL ORDER BY lease_owner",
            {},
        )
        return [str(r[0]) for r in rows]

    async def release_leases_of(self, owners: Sequence[str]) -> int:
        if not owners:
            return 0
        return await self._run(
            "release_leases_of",
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
            " WHERE status = 'pending' AND lease_owner = ANY(%(owners)s::text[])",
            {"owners": list(owners)},
        )

    async def requeue(self, ids: Sequence[int], *, now: datetime) -> int:
        """Dead rows back to pending: no attempts, due now, ``max_age`` counted from ``now``."""
        if not ids:
            return 0
        return await self._run(
            "requeue",
            _q(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = {now},"
                " created_at = %(at)s, updated_at = %(at)s, lease_owner = NULL, lease_until = NULL"
                " WHERE status = 'dead' AND id = ANY(%(ids)s::bigint[])"
            ),
            self._p(at=utc(now), ids=list(ids)),
        )

    async def next_due(self, sink: str) -> datetime | None:
        """When the head pending row of ``sink`` can next be claimed, on the caller's clock: the
        database says how long from now, so hosts whose clocks disagree with it still wait right."""
        rows = await self._rows(
            "next_due",
            _q(
                "SELECT greatest(next_attempt_at, coalesce(lease_until, next_attempt_at))"
                " - {now} FROM outbox WHERE sink = %(sink)s AND status = 'pending'"
                " ORDER BY id LIMIT 1"
            ),
            self._p(sink=sink),
        )
        if not rows:
            return None
        remaining: timedelta = rows[0][0]
        return self._host_now() + remaining

    async def expire_history(self, before: datetime) -> int:
        """Delete observations, and finished (sent or dead) outbox rows, older than ``before``."""
        cutoff = utc(before)
        total = 0
        for op_sql in (
            "DELETE FROM observations WHERE id IN"
            " (SELECT id FROM observations WHERE observed_at < %(cutoff)s LIMIT %(chunk)s)",
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            " WHERE status IN ('sent', 'dead', 'silenced') AND created_at < %(cutoff)s"
            " LIMIT %(chunk)s)",
        ):
            while True:
                deleted = await self._run(
                    "expire_history", op_sql, {"cutoff": cutoff, "chunk": _EXPIRE_CHUNK}
                )
                total += deleted
                if deleted < _EXPIRE_CHUNK:
                    break
        return total

    async def outbox_counts(self) -> list[OutboxCounts]:
        rows = await self._rows(
            "outbox_counts",
            "SELECT sink, status, count(*) FROM outbox GROUP BY sink, status ORDER BY sink, status",
            {},
        )
        return [OutboxCounts(sink=s, status=st, count=int(n)) for s, st, n in rows]

    async def history(
        self,
        *,
        target: str | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Observation]:
        rows = await self._rows(
            "history",
            "SELECT target, observed_at, snapshot_json FROM ("
            " SELECT id, target, observed_at, snapshot_json FROM observations"
            " WHERE (%(target)s::text IS NULL OR target = %(target)s)"
            " AND (%(since)s::timestamptz IS NULL OR observed_at >= %(since)s)"
            " ORDER BY observed_at DESC, id DESC LIMIT %(latest)s"
            ") AS newest ORDER BY observed_at, id",
            {
                "target": target,
                "since": None if since is None else utc(since),
                "latest": None if latest is None else max(latest, 0),  # LIMIT NULL: all
            },
        )
        found = (observation(str(t), utc(cast(datetime, at)), str(j)) for t, at, j in rows)
        return [o for o in found if o is not None]

    async def latest_history(
        self, targets: Sequence[str], *, since: datetime | None = None, latest: int
    ) -> dict[str, list[Observation]]:
        """One statement: for each target (an array), its newest rows through
        ``observations (target, observed_at)`` walked backwards (a LATERAL join, ``LIMIT`` each)."""
        names = list(dict.fromkeys(targets))
        out: dict[str, list[Observation]] = {name: [] for name in names}
        if not names:
            return out
        rows = await self._rows(
            "latest_history",
            "SELECT t.target, o.observed_at, o.snapshot_json"
            " FROM unnest(%(targets)s::text[]) AS t(target)"
            " CROSS JOIN LATERAL ("
            "  SELECT id, observed_at, snapshot_json FROM observations"
            "  WHERE target = t.target"
            "  AND (%(since)s::timestamptz IS NULL OR observed_at >= %(since)s)"
            "  ORDER BY observed_at DESC, id DESC LIMIT %(latest)s"
            " ) AS o ORDER BY t.target, o.observed_at, o.id",
            {
                "targets": names,
                "since": None if since is None else utc(since),
                "latest": max(latest, 0),
            },
        )
        for t, at, j in rows:
            found = observation(str(t), utc(cast(datetime, at)), str(j))
            if found is not None:
                out[str(t)].append(found)
        return out

    async def outbox_rows(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        rows = await self._rows(
            "outbox_rows",
            f"SELECT {', '.join(ROW_COLUMNS)} FROM outbox"  # noqa: S608 -- fixed column names; values are bound
            " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
            " AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)"
            " AND (%(prefix)s::text IS NULL OR starts_with(dedup_key, %(prefix)s))"
            " ORDER BY id DESC LIMIT %(limit)s",
            {
                "status": status,
                "since": None if since is None else utc(since),
                "prefix": key_prefix,
                "limit": max(limit, 0),
            },
        )
        return [outbox_row(values, lambda moment: utc(cast(datetime, moment))) for values in rows]

    async def sinks_with_pending(self) -> list[str]:
        rows = await self._rows(
            "sinks_with_pending",
            "SELECT DISTINCT sink FROM outbox WHERE status = 'pending' ORDER BY sink",
            {},
        )
        return [str(r[0]) for r in rows]

    # --- silences ------------------------------------------------------------------------------

    async def add_silence(self, silence: Silence, *, now: datetime) -> None:
        at = utc(now)
        await self._run(
            "add_silence",
            f"INSERT INTO silences ({_SILENCE_COLUMNS}, created_at, updated_at)"  # noqa: S608 -- fixed column names
            " VALUES (%(id)s, %(target)s, %(pair)s, %(kind)s, %(starts)s, %(ends)s, %(comment)s,"
            " %(by)s, %(at)s, %(at)s)",
            {
                "id": silence.id,
                "target": silence.target,
                "pair": silence.pair,
                "kind": silence.kind.value if silence.kind else None,
                "starts": silence.starts_at,
                "ends": silence.ends_at,
                "comment": silence.comment,
                "by": silence.created_by,
                "at": at,
            },
        )

    async def list_silences(self, *, now: datetime, ended: bool = False) -> list[Silence]:
        rows = await self._rows(
            "list_silences",
            f"SELECT {_SILENCE_COLUMNS} FROM silences"  # noqa: S608 -- fixed column names
            " WHERE %(all)s OR ends_at > %(at)s ORDER BY starts_at, id",
            {"all": ended, "at": utc(now)},
        )
        return [_silence(values) for values in rows]

    async def expire_silence(self, silence_id: str, *, now: datetime) -> Silence | None:
        at = utc(now)
        async with self._tx("expire_silence") as conn:
            cur = await conn.execute(
                f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE id = %(id)s FOR UPDATE",  # noqa: S608 -- fixed column names
                {"id": silence_id},
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(
                "UPDATE silences SET ends_at = %(at)s, updated_at = %(at)s"
                " WHERE id = %(id)s AND ends_at > %(at)s",
                {"id": silence_id, "at": at},
            )
        return _silence(row)

    # --- cluster -------------------------------------------------------------------------------

    async def register(self, member: str, *, host: str, pid: int, now: datetime) -> None:
        await self._run(
            "register",
            _q(
                "INSERT INTO instances (id, host, pid, started_at, last_heartbeat)"
                " VALUES (%(id)s, %(host)s, %(pid)s, {now}, {now})"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat"
            ),
            self._p(id=member, host=host, pid=pid),
        )

    async def heartbeat(self, member: str, *, now: datetime) -> bool:
        return (
            await self._run(
                "heartbeat",
                _q("UPDATE instances SET last_heartbeat = {now} WHERE id = %(id)s"),
                self._p(id=member),
            )
            > 0
        )

    async def members(self) -> list[Member]:
        rows = await self._rows(
            "members",
            "SELECT id, host, pid, started_at, last_heartbeat FROM instances ORDER BY id",
            {},
        )
        return [
            Member(id=i, host=h, pid=p, started_at=utc(s), last_heartbeat=utc(b))
            for i, h, p, s, b in rows
        ]

    async def forget_members(self, *, silent_for: float, now: datetime) -> int:
        return await self._run(
            "forget_members",
            _q(
                "DELETE FROM instances WHERE last_heartbeat < {now}"
                " - make_interval(secs => %(silent)s)"
            ),
            self._p(silent=silent_for),
        )

    async def acquire_target(
        self, target: str, *, owner: str, lease: float, now: datetime
    ) -> datetime | None:
        rows = await self._rows(
            "acquire_target",
            _TAKE_LEASE,
            self._p(target=target, owner=owner, lease=lease),
        )
        return utc(rows[0][0]) if rows else None

    async def release_target(self, target: str, *, owner: str) -> None:
        await self._run(
            "release_target",
            "DELETE FROM target_leases WHERE target = %(target)s AND owner = %(owner)s",
            {"target": target, "owner": owner},
        )

    async def target_leases(self) -> list[TargetLease]:
        rows = await self._rows(
            "target_leases",
            "SELECT l.target, l.owner, l.lease_until, c.checked_at FROM target_leases l"
            " LEFT JOIN target_checks c ON c.target = l.target ORDER BY l.target",
            {},
        )
        return [
            TargetLease(target=t, owner=o, until=utc(u), checked_at=None if c is None else utc(c))
            for t, o, u, c in rows
        ]

    async def renew_targets(self, owner: str, *, lease: float, now: datetime) -> list[str]:
        rows = await self._rows(
            "renew_targets",
            _q(
                "UPDATE target_leases SET lease_until = {now} + make_interval(secs => %(lease)s)"
                " WHERE owner = %(owner)s RETURNING target"
            ),
            self._p(owner=owner, lease=lease),
        )
        return sorted(str(r[0]) for r in rows)

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
        params = self._p(target=target, owner=owner, lease=lease, spacing=spacing)
        async with self._tx("begin_check") as conn:
            # the lease first: its row lock serializes the instances asking for this target
            cur = await conn.execute(
                _TAKE_LEASE,
                params,
            )
            if await cur.fetchone() is None:
                return None
            # seconds since the last check began; one that began after now does not count
            cur = await conn.execute(
                _q(
                    "SELECT extract(epoch FROM {now} - checked_at)::float8 FROM target_checks"
                    " WHERE target = %(target)s AND checked_at <= {now}"
                ),
                params,
            )
            row = await cur.fetchone()
            since = None if row is None else float(row[0])
            granted = since is None or since >= spacing
            if granted:
                await conn.execute(
                    _q(
                        "INSERT INTO target_checks (target, checked_at) VALUES (%(target)s, {now})"
                        " ON CONFLICT (target) DO UPDATE SET checked_at = excluded.checked_at"
                    ),
                    params,
                )
            loaded = await _load(conn, target, now) if granted and load else None
        return CheckTurn(granted=granted, since_last=since, loaded=loaded)

    async def renew_claims(
        self, ids: Sequence[int], *, owner: str, lease: float, now: datetime
    ) -> list[int]:
        if not ids:
            return []
        rows = await self._rows(
            "renew_claims",
            _q(
                "UPDATE outbox SET lease_until = {now} + make_interval(secs => %(lease)s)"
                " WHERE id = ANY(%(ids)s::bigint[]) AND lease_owner = %(owner)s"
                " AND status = 'pending' RETURNING id"
            ),
            self._p(ids=list(ids), owner=owner, lease=lease),
        )
        return sorted(int(r[0]) for r in rows)

    async def leave(self, member: str) -> None:
        async with self._tx("leave") as conn:
            await conn.execute("DELETE FROM target_leases WHERE owner = %s", (member,))
            await conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = %s AND status = 'pending'",
                (member,),
            )
            await conn.execute("DELETE FROM instances WHERE id = %s", (member,))
