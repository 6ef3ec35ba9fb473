"""The store backends the contract suite (``test_store_contract.py``) runs on, each on a database of
its own: the in-memory store, a real SQLite file, and the real PostgreSQL server named by
``MONITOR_TEST_POSTGRES_DSN`` (a fresh schema per test, dropped after it; ``.ci/run`` sets the
variable, and without it the PostgreSQL cases skip and say why).

A :class:`Backend` makes any number of store objects on its one database (two of them are two
instances sharing it), and reaches under the store for what no public method shows: history rows,
a corrupted outbox row, a database left at an older schema version.

Time is a :class:`Clock` the tests move by hand. The stores that trust the caller's ``now`` get it
as ``now=clock()``; the PostgreSQL store, which compares leases on the database's clock, gets the
same clock injected in place of the database's, so one test reads the same on every backend.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Snapshot, TargetState
from monitor.store import ClusterStore
from monitor.store.memory import MemoryDatabase, MemoryStore
from monitor.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from monitor.store.sqlite import SqliteStore

POSTGRES_DSN_VAR = "MONITOR_TEST_POSTGRES_DSN"
NO_POSTGRES = (
    f"PostgreSQL tests need a server: set {POSTGRES_DSN_VAR}=postgresql://USER:PASSWORD@HOST/DB "
    "(.ci/run starts the machine's PostgreSQL and sets it)"
)

T0 = datetime(2025, 5, 16, 8, 30, 0, 123456, tzinfo=UTC)


@dataclass
class Clock:
    """The time every store of a test agrees on; moved only by the test."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def postgres_dsn() -> str:
    """The server's URL, or skip the test saying how to get one."""
    dsn = os.environ.get(POSTGRES_DSN_VAR, "")
    if not dsn:
        pytest.skip(NO_POSTGRES)
    return dsn


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` whose connections work in ``schema`` (libpq's ``options``, as a user would)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


class Backend(ABC):
    """One database and the stores on it."""

    name: str
    #: whether the backend has a schema with versions and migrations
    has_schema = True

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._stores: list[ClusterStore] = []

    def store(self) -> ClusterStore:
        """A new, unopened store on this backend's database (another instance)."""
        made = self._make()
        self._stores.append(made)
        return made

    @abstractmethod
    def _make(self) -> ClusterStore: ...

    async def cleanup(self) -> None:
        for made in self._stores:
            await made.aclose()  # stores a test left open ("crashed") are closed too

    @abstractmethod
    async def observations(self) -> list[tuple[str, datetime, Snapshot]]:
        """Every history row: (target, observed_at, snapshot), oldest first."""

    @abstractmethod
    async def corrupt_event(self, row_id: int) -> None:
        """Make an outbox row's stored event unreadable."""

    async def schema_version(self) -> int:
        raise NotImplementedError

    async def tables(self) -> set[str]:
        raise NotImplementedError

    async def create_at_version(self, version: int, *, target: str, state: TargetState) -> None:
        """Create the database as release ``version`` of the schema left it, with one target."""
        raise NotImplementedError

    async def set_schema_version(self, version: int) -> None:
        """Pretend a newer release has migrated the database."""
        raise NotImplementedError


class MemoryBackend(Backend):
    name = "memory"
    has_schema = False

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.database = MemoryDatabase()

    def _make(self) -> ClusterStore:
        return MemoryStore(self.database)

    async def observations(self) -> list[tuple[str, datetime, Snapshot]]:
        return [
            (t, at, Snapshot.from_json(json.loads(s))) for t, at, s in self.database.observations
        ]

    async def corrupt_event(self, row_id: int) -> None:
        self.database.outbox[row_id].event_json = "not json"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, clock: Clock, path: Path) -> None:
        super().__init__(clock)
        self.path = path

    def _make(self) -> ClusterStore:
        return SqliteStore(self.path)

    def _raw(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    async def observations(self) -> list[tuple[str, datetime, Snapshot]]:
        with self._raw() as conn:
            rows = conn.execute(
                "SELECT target, observed_at, snapshot_json FROM observations ORDER BY id"
            ).fetchall()
        return [
            (t, datetime.fromisoformat(at), Snapshot.from_json(json.loads(s))) for t, at, s in rows
        ]

    async def corrupt_event(self, row_id: int) -> None:
        with self._raw() as conn:
            conn.execute("UPDATE outbox SET event_json = 'not json' WHERE id = ?", (row_id,))

    async def schema_version(self) -> int:
        with self._raw() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    async def tables(self) -> set[str]:
        with self._raw() as conn:
            return {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }

    async def create_at_version(self, version: int, *, target: str, state: TargetState) -> None:
        with self._raw() as conn:
            for step in SQLITE_MIGRATIONS[:version]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute(
                "INSERT INTO targets (name, state_json, updated_at) VALUES (?, ?, ?)",
                (target, json.dumps(state.to_json()), _ts(self.clock())),
            )

    async def set_schema_version(self, version: int) -> None:
        with self._raw() as conn:
            conn.execute(f"PRAGMA user_version = {version:d}")


class PostgresBackend(Backend):
    """A schema of its own on the test server, so tests (and parallel runs) never meet."""

    name = "postgres"

    def __init__(self, clock: Clock, dsn: str) -> None:
        super().__init__(clock)
        self.server_dsn = dsn
        self.schema = f"test_{uuid.uuid4().hex[:16]}"
        self.dsn = with_search_path(dsn, self.schema)

    def _make(self) -> ClusterStore:
        from monitor.store.postgres import PostgresStore  # noqa: PLC0415 -- only with a server

        return PostgresStore(self.dsn, clock=self.clock, max_size=4)

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[Any]:
        """A connection of the test's own, in this backend's schema, autocommitting."""
        import psycopg  # noqa: PLC0415 -- as above

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            yield conn

    async def create_schema(self) -> None:
        async with self.raw() as conn:
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')

    async def cleanup(self) -> None:
        await super().cleanup()
        async with self.raw() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    async def observations(self) -> list[tuple[str, datetime, Snapshot]]:
        async with self.raw() as conn:
            cur = await conn.execute(
                "SELECT target, observed_at, snapshot_json FROM observations ORDER BY id"
            )
            rows = await cur.fetchall()
        return [(t, at, Snapshot.from_json(json.loads(s))) for t, at, s in rows]

    async def corrupt_event(self, row_id: int) -> None:
        async with self.raw() as conn:
            await conn.execute("UPDATE outbox SET event_json = 'not json' WHERE id = %s", (row_id,))

    async def schema_version(self) -> int:
        async with self.raw() as conn:
            cur = await conn.execute("SELECT max(version) FROM schema_migrations")
            row = await cur.fetchone()
        return int(row[0])

    async def tables(self) -> set[str]:
        async with self.raw() as conn:
            cur = await conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.schema,),
            )
            return {r[0] for r in await cur.fetchall()}

    async def create_at_version(self, version: int, *, target: str, state: TargetState) -> None:
        from monitor.store.postgres import MIGRATIONS  # noqa: PLC0415 -- only with a server

        async with self.raw() as conn:
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for number, step in enumerate(MIGRATIONS[:version], start=1):
                for statement in step:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
            await conn.execute(
                "INSERT INTO targets (name, state_json, updated_at) VALUES (%s, %s, %s)",
                (target, json.dumps(state.to_json()), self.clock()),
            )

    async def set_schema_version(self, version: int) -> None:
        async with self.raw() as conn:
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


BACKENDS = ("memory", "sqlite", "postgres")
SCHEMA_BACKENDS = ("sqlite", "postgres")


def backend_params(names: tuple[str, ...]) -> list[Any]:
    """pytest params for ``names``, the PostgreSQL one marked ``postgres``."""
    return [
        pytest.param(n, marks=pytest.mark.postgres) if n == "postgres" else pytest.param(n)
        for n in names
    ]


async def make_backend(name: str, tmp_path: Path, clock: Clock) -> Backend:
    if name == "memory":
        return MemoryBackend(clock)
    if name == "sqlite":
        return SqliteBackend(clock, tmp_path / "state.db")
    backend = PostgresBackend(clock, postgres_dsn())
    await backend.create_schema()
    return backend


@asynccontextmanager
async def backend_for(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A backend on a fresh database, cleaned up after (for fixtures)."""
    made = await make_backend(name, tmp_path, Clock())
    try:
        yield made
    finally:
        await made.cleanup()
